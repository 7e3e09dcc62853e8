"""The defects of issue 15, each reproduced (these tests failed on the CLI before the fix) and now guarded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgewise.attacks import alma, ddn
from edgewise.cli import main, minmax
from edgewise.cli.options import RULES
from edgewise.data import load as load_dataset
from edgewise.data import sample
from edgewise.distances import get as get_distance
from edgewise.models import load_model

Rows = Callable[[Path], list[dict[str, Any]]]
ErrorLine = Callable[[], str]
QUIET = ["--no-progress"]


@pytest.mark.parametrize(("name", "function", "steps"), [("ddn", ddn, 10), ("alma", alma, 15)])
def test_targeted_reaches_the_attack(tmp_path: Path, name: str, function: Any, steps: int, rows: Rows) -> None:
    # Before: --targeted changed the labels only, the attack ran untargeted, success 0% and median inf.
    out = tmp_path / name
    assert main(["attack", "--attack", name, "--targeted", "--steps", str(steps), "--n", "4", "--out", str(out),
                 *QUIET]) == 0
    model, (inputs, labels) = load_model("smallcnn-fmnist"), sample()
    targets = (labels[:4] + 1) % 10
    direct = function(model, inputs[:4], targets, targeted=True, steps=steps)
    found = model(direct).argmax(1) == targets
    l2 = (direct - inputs[:4]).flatten(1).norm(dim=1)
    results = rows(out)
    assert sum(r["success"] for r in results) == int(found.sum()) > 0
    for row in results:
        assert row["success"] == bool(found[row["index"]])
        if row["success"]:
            assert row["adversarial_prediction"] == int(targets[row["index"]])
            assert row["distances"]["l2"] == pytest.approx(float(l2[row["index"]]), rel=1e-5)


def test_an_attack_that_cannot_run_targeted_is_refused(one_error_line: ErrorLine) -> None:
    assert main(["attack", "--attack", "ddn", "--attack-options", '{"targeted": true}', "--n", "2"]) == 2
    assert "give --targeted" in one_error_line()


def test_a_reused_out_never_hands_back_another_runs_results(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            one_error_line: ErrorLine) -> None:
    # Before: a benchmark run with --n 4 and then --n 8 in the same --out printed n = 8 in the header and a table
    # computed on the 4 samples of the first run's batch.
    out = tmp_path / "report"
    base = ["benchmark", "--attack", "ddn", "--steps", "2", "--out", str(out), *QUIET]
    assert main([*base, "--n", "4"]) == 0
    capsys.readouterr()
    # A larger --n computes the missing samples: the table holds the 8 samples the header announces.
    assert main([*base, "--n", "8"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["arguments"]["n"] == 8
    assert all(row["n"] == 8 for row in report["models"]["smallcnn-fmnist"]["rows"])
    attack = ["attack", "--steps", "2", "--n", "4", "--out", str(tmp_path / "a"), *QUIET]
    assert main(attack) == 0
    capsys.readouterr()
    assert main([*attack, "--attack", "fmn"]) == 2
    assert "attack_name='ddn', this run has attack_name='fmn'" in one_error_line()
    assert main([*attack, "--seed", "3"]) == 2
    assert "seed=0, this run has seed=3" in one_error_line()


def test_summary_only_options_reuse_finished_batches(tmp_path: Path) -> None:
    out = tmp_path / "a"
    arguments = ["attack", "--steps", "3", "--n", "4", "--out", str(out), *QUIET]
    assert main([*arguments, "--eps", "0.5"]) == 0
    batches = {p: p.stat().st_mtime_ns for p in (out / "batches").glob("batch-*.pt")}
    assert main([*arguments, "--eps", "0.1,2", "--no-checks", "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "batches").glob("batch-*.pt")} == batches
    assert set(json.loads((out / "results.json").read_text())["summary"]["robust_accuracy"]) == {"0.1", "2.0"}


def test_attack_larger_n_computes_only_the_missing_samples(tmp_path: Path, rows: Rows) -> None:
    def batches(out: Path) -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in (out / "batches").glob("batch-*.pt")}

    arguments = ["attack", "--attack", "pgd", "--steps", "2", "--batch-size", "2", *QUIET]
    out = tmp_path / "grown"
    assert main([*arguments, "--n", "4", "--out", str(out)]) == 0
    finished = batches(out)
    assert main([*arguments, "--n", "6", "--out", str(out)]) == 0
    now = batches(out)
    assert len(now) == len(finished) + 1 and all(now[p] == stamp for p, stamp in finished.items())
    assert main([*arguments, "--n", "6", "--out", str(tmp_path / "fresh")]) == 0
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in rows(out)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in rows(tmp_path / "fresh")]
    assert json.loads((out / "results.json").read_text())["summary"]["n"] == 6


def test_other_commands_folders_are_refused_and_stale_files_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                    one_error_line: ErrorLine) -> None:
    out = tmp_path / "x"
    attack = ["attack", "--steps", "2", "--n", "3", "--out", str(out), *QUIET]
    assert main(attack) == 0
    capsys.readouterr()
    assert main(["minmax", "--model", "A", "--steps", "1", "--n", "2", "--out", str(out), *QUIET]) == 2
    assert "command='attack', this run has command='minmax'" in one_error_line()
    for stale in ("trace.png", "trace.json", "examples.png"):  # as a previous run (or version) left them
        (out / stale).write_text("old")
    assert main([*attack, "--eps", "0.2"]) == 0
    assert not (out / "trace.png").exists() and not (out / "trace.json").exists()
    assert (out / "examples.png").read_bytes()[:4] == b"\x89PNG"
    report = tmp_path / "report"
    bench = ["benchmark", "--attack", "ddn", "--steps", "1", "--n", "2", "--out", str(report), *QUIET]
    assert main(bench) == 0
    (report / "robust_accuracy-gone-model.png").write_text("old")
    assert main(bench) == 0
    assert not (report / "robust_accuracy-gone-model.png").exists()
    assert (report / "robust_accuracy-smallcnn-fmnist.png").is_file()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["attack", "--steps", "2", "--n", "3", "--out", str(foreign), *QUIET]) == 2
    assert "not written by edgewise" in one_error_line()
    assert (foreign / "notes.txt").read_text() == "mine"
    traced = tmp_path / "traced"
    assert main(["attack", "--steps", "2", "--n", "3", "--trace", "--out", str(traced), *QUIET]) == 0
    capsys.readouterr()
    assert main(["attack", "--steps", "2", "--n", "3", "--out", str(traced), *QUIET]) == 2
    assert "trace=True, this run has trace=False" in one_error_line()


@pytest.mark.parametrize("argv", [
    ["attack", "--steps", "1", "--n", "2"],
    ["benchmark", "--attack", "ddn", "--steps", "1", "--n", "2"],
    ["minmax", "--steps", "1", "--n", "2"],
    ["exact", "--model", "tinymlp-fmnist", "--n", "1"],
    ["train", "--model", "tinymlp-fmnist", "--epochs", "1"],
], ids=lambda argv: argv[0])
def test_an_out_that_is_a_file_is_one_line_naming_out(argv: list[str], tmp_path: Path,
                                                       one_error_line: ErrorLine) -> None:
    out = tmp_path / "a-file"
    out.write_text("mine")
    assert main([*argv, "--out", str(out), *QUIET]) == 2
    assert f"argument --out: {out} is a file, expected a folder" in one_error_line()
    assert out.read_text() == "mine"


NO_EFFECT = {
    "--group-size": ["minmax", "--kind", "ensemble", "--group-size", "2"],
    "--transforms": ["minmax", "--kind", "universal", "--transforms", "identity"],
    "--random": ["minmax", "--kind", "ensemble", "--random"],
    "--exact-time-limit": ["benchmark", "--model", "tinymlp-fmnist", "--attack", "ddn", "--steps", "1", "--n", "2",
                           "--exact-time-limit", "5"],
}


def test_every_rule_has_a_case() -> None:
    assert {rule.option for rule in RULES} == set(NO_EFFECT)


@pytest.mark.parametrize("option", sorted(NO_EFFECT))
def test_an_option_without_effect_is_an_error_naming_both(option: str, tmp_path: Path,
                                                          one_error_line: ErrorLine) -> None:
    rule = next(rule for rule in RULES if rule.option == option)
    assert main([*NO_EFFECT[option], "--out", str(tmp_path / "o")]) == 2
    error = one_error_line()
    assert f"{option} has no effect with {rule.depends}" in error
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "both"), [
    (["attack", "--data", "sample", "--split", "train"], ("--split", "--data 'sample'")),
    (["minmax", "--data", "fmnist-test", "--split", "test"], ("--split", "--data 'fmnist-test'")),
    (["attack", "--model", "smallcnn-fmnist", "--weights", "w.pt"], ("--weights", "zoo model 'smallcnn-fmnist'")),
    (["benchmark", "--model", "smallcnn-fmnist", "--mean", "0.5"], ("--mean/--std", "zoo model")),
    (["attack", "--indices", "1,2", "--n", "2"], ("--indices", "--n")),
    (["minmax", "--indices", "1,2", "--offset", "1"], ("--indices", "--offset")),
])
def test_options_without_effect_in_the_specs_are_errors_naming_both(argv: list[str], both: tuple[str, str],
                                                                    tmp_path: Path, one_error_line: ErrorLine) -> None:
    # Before: a data folder given while the data stayed the default (--data-root with --data sample) was ignored;
    # the specs now check what applies to them (edgewise.models.load, edgewise.data.load / select).
    assert main([*argv, "--out", str(tmp_path / "o"), *QUIET]) == 2
    error = one_error_line()
    assert all(name in error for name in both), error
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "match"), [
    (["minmax", "--kind", "universal", "--model", "A", "--group-size", "0"], "--group-size must be >= 1"),
    (["minmax", "--kind", "universal", "--model", "A", "--group-size", "9", "--n", "4"], "--group-size 9 is larger"),
    # Before: the samples past the last whole group were dropped, silently (--n 7 in groups of 5 attacked 5).
    (["minmax", "--kind", "universal", "--model", "A", "--group-size", "5", "--n", "7"],
     r"^edgewise: error: --n 7 is not a multiple of --group-size 5: each universal perturbation is shared by a group "
     r"of exactly --group-size images \(Acc image i and ASR_gp are over such groups\); give a multiple of 5 "
     r"samples, e.g. --n 5$"),
    (["minmax", "--kind", "universal", "--model", "A", "--group-size", "3"],
     r"--n \(default: all, 1000 samples\) is not a multiple of --group-size 3: .* e.g. --n 999$"),
    (["minmax", "--kind", "universal", "--model", "A", "--group-size", "2", "--indices", "4,5,6"],
     r"--indices \(3 samples\) is not a multiple of --group-size 2: .* e.g. --n 2$"),
    (["minmax", "--n", "0"], r"--n must be in \[1, 1000\]"),
    (["minmax", "--n", "1001"], r"--n must be in \[1, 1000\]"),
    (["minmax", "--device", "cuda:99"], "device"),
    (["minmax", "--transforms", "identity,twirl", "--kind", "transform", "--model", "A"], "--transforms must be"),
])
def test_minmax_errors_are_one_line(argv: list[str], match: str, tmp_path: Path, one_error_line: ErrorLine) -> None:
    # Before: --group-size 0 raised ZeroDivisionError; --n was not checked; there was no --device.
    assert main([*argv, "--steps", "1", "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert re.search(match, one_error_line())


def test_lpips_without_weights_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           one_error_line: ErrorLine) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    # AlexNet takes images of 31 x 31 and more: a model of the sample resized to 32 x 32.
    (tmp_path / "net.py").write_text("from torch import nn\n\n\ndef build():\n"
                                     "    return nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))\n")
    assert main(["attack", "--model", f"{tmp_path / 'net.py'}:build", "--resize", "32", "--attack", "alma",
                 "--distance", "lpips", "--n", "2", "--steps", "2", "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert "--distance lpips: LPIPS net='alex' needs torchvision's ImageNet weights" in one_error_line()


def test_lpips_on_images_too_small_for_alexnet_is_one_line(tmp_path: Path, one_error_line: ErrorLine) -> None:
    assert main(["attack", "--attack", "alma", "--distance", "lpips", "--n", "2", "--steps", "2",
                 "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert "--distance lpips: reference must be at least 31x31 for LPIPS net='alex'" in one_error_line()


def test_ensemble_of_models_with_other_input_shapes_is_one_line(tmp_path: Path, one_error_line: ErrorLine) -> None:
    wide = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(ValueError, match=r"--model wide: --model cannot take --data 'sample''s inputs of shape"):
        minmax.check_targets({"A": load_model("mlp-fmnist"), "wide": wide}, load_dataset("sample"))
    torch.jit.save(torch.jit.script(wide), tmp_path / "wide.ts")
    assert main(["minmax", "--model", f"A,{tmp_path / 'wide.ts'}", "--steps", "1", "--n", "2",
                 "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert "cannot take --data 'sample''s inputs of shape (1, 28, 28)" in one_error_line()


def test_minmax_shows_progress_and_resumes_after_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str], rows: Rows) -> None:
    # Before: no progress bar, no resume, and a Ctrl-C message promising a resume that did not exist.
    arguments = ["minmax", "--model", "A,C", "--distance", "l2", "--eps", "1", "--steps", "2", "--n", "6",
                 "--batch-size", "2"]
    calls = {"n": 0}
    real = minmax.ensemble_attack

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(minmax, "ensemble_attack", interrupted)
    out = tmp_path / "resumed"
    assert main([*arguments, "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "minmax:" in err and "run the same command again to resume" in err  # the tqdm bar, the message
    finished = {p: p.stat().st_mtime_ns for p in (out / "batches").rglob("batch-*.pt")}
    assert len(finished) == 2
    monkeypatch.setattr(minmax, "ensemble_attack", real)
    assert main([*arguments, "--out", str(out), *QUIET]) == 0
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in finished.items())
    assert main([*arguments, "--out", str(tmp_path / "fresh"), *QUIET]) == 0
    assert rows(out) == rows(tmp_path / "fresh")
    assert len(rows(out)) == 12


def test_minmax_larger_n_computes_only_the_missing_batches(tmp_path: Path) -> None:
    arguments = ["minmax", "--model", "A", "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "o"),
                 *QUIET]
    assert main([*arguments, "--n", "4"]) == 0
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "o" / "batches").rglob("batch-*.pt")}
    assert main([*arguments, "--n", "6"]) == 0
    now = {p: p.stat().st_mtime_ns for p in (tmp_path / "o" / "batches").rglob("batch-*.pt")}
    assert len(now) == len(finished) + 2 and all(now[p] == stamp for p, stamp in finished.items())


def test_the_report_and_grid_carry_the_distance_the_attack_minimized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     rows: Rows) -> None:
    # Before: the report, samples.jsonl and the example grid measured l2 whatever ALMA minimized (CIEDE2000 here).
    from edgewise.eval import report

    titles: list[str] = []
    monkeypatch.setattr(report.plt, "close", lambda figure: titles.extend(a.get_title() for a in figure.axes))
    out = tmp_path / "ciede2000"
    assert main(["attack", "--attack", "alma", "--distance", "ciede2000", "--steps", "15", "--n", "3",
                 "--out", str(out), *QUIET]) == 0
    summary = json.loads((out / "results.json").read_text())["summary"]
    assert summary["distance"] == "ciede2000"
    model, (inputs, labels) = load_model("smallcnn-fmnist"), sample()
    adv = alma(model, inputs[:3], labels[:3], distance="ciede2000", steps=15)
    expected = get_distance("ciede2000")(inputs[:3])(adv)
    succeeded = [r for r in rows(out) if r["success"] and r["clean_correct"]]
    assert succeeded
    for row in succeeded:
        assert row["distances"]["ciede2000"] == pytest.approx(float(expected[row["index"]]), rel=1e-4)
    assert any("ciede2000" in title for title in titles) and not any("ℓ2" in title for title in titles)


def test_models_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    from edgewise.models import list_models

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "architecture", "dataset"]
    assert [line.split()[0] for line in lines[1:]] == sorted(list_models())
    assert len({re.match(r"\S+\s+", line).end() for line in lines}) == 1  # type: ignore[union-attr]


def test_no_second_name_for_a_concept() -> None:
    from edgewise.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    flags = {name: {o for a in p._actions for o in a.option_strings} for name, p in commands.items()}
    retired = {"--models", "--attacks", "--norm", "--dataset", "--init", "--num-samples"}
    assert all(not (options & retired) for options in flags.values()), flags
    for name, parser in commands.items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (name, action.option_strings)
        text = parser.format_help()
        if "--eps" in flags[name]:
            assert parser.parse_args(["--eps", "0.1,0.2"]).eps == [0.1, 0.2], name
        if "--batch-size" in flags[name]:
            assert re.search(r"--batch-size.*\(default: \d+\)", " ".join(text.split())), name
    shared = set.intersection(*(flags[c] for c in ("attack", "benchmark", "minmax")))
    assert {"--model", "--data", "--n", "--offset", "--indices", "--batch-size", "--seed", "--device", "--out",
            "--no-progress", "--steps", "--distance"} <= shared
