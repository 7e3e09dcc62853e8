import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from edgewise import __version__
from edgewise.attacks import fab, fmn
from edgewise.cli import main
from edgewise.data import sample
from edgewise.models import load_model


def test_attack_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ddn"
    status = main(["attack", "--model", "smallcnn-fmnist", "--attack", "ddn", "--steps", "10", "--n", "20",
                   "--out", str(out), "--no-progress"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "attack success rate" in printed and "median l2" in printed
    lines = printed.splitlines()  # what was evaluated comes first
    assert lines[0].startswith("model   smallcnn-fmnist (zoo, smallcnn-fmnist.pt sha256 ")
    # the shipped sample has no split (it printed "split None"); an IDX folder's is printed (test_every_option)
    assert lines[1].startswith("data    sample (input 1x28x28, 10 classes") and "n=20 of 1000" in lines[1]
    assert lines[2] == "attack  ddn, distance l2, levels None, seed 0"
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["n"] == 20 and results["arguments"]["steps"] == 10
    assert {"torch", "device", "git_commit", "seed"} <= set(results["environment"])
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[0])["forwards"] == 10.0
    for png in ("robust_accuracy.png", "examples.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["attack", "--model", "nope"], "--model 'nope' is neither a zoo model"),
        (["attack", "--attack", "nope"], "--attack must be one of"),
        (["attack", "--n", "5000"], r"--n must be in \[1, 1000\]"),
        (["attack", "--attack-options", "[1]"], "--attack-options must be a JSON object"),
        (["attack", "--attack-options", '{"foo": 1}'], r"takes no option\(s\) \['foo'\]"),
        (["attack", "--distance", "l1"], "--distance does not apply"),
        (["attack", "--attack", "fmn", "--distance", "ciede2000"],
         r"--distance must be one of \['l0', 'l1', 'l2', 'linf'\] for attack 'fmn'"),
        (["attack", "--steps", "ten"], "invalid int value"),
        (["attack", "--data", "/nonexistent"], "--data '/nonexistent' is neither sample nor fmnist-test"),
        (["attack", "--data", "sample", "--split", "train"], "--split applies to CIFAR and IDX folders, not to "
                                                            "--data 'sample'"),
        (["attack", "--weights", "w.pt"], "--weights does not apply to zoo model 'smallcnn-fmnist'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(match, err), err


@pytest.mark.parametrize(("argv", "norm"), [(["--distance", "l1"], "l1"), (["--attack-options", '{"norm": "linf"}'],
                                                                          "linf")])
def test_fmn_norm_is_bound_and_reported(tmp_path: Path, argv: list[str], norm: str) -> None:
    # --distance binds FMN's `norm`; the report measures the norm the attack minimized, however it was chosen.
    out = tmp_path / "fmn"
    assert main(["attack", "--attack", "fmn", "--steps", "8", "--n", "6", "--out", str(out), "--no-progress",
                 *argv]) == 0
    assert json.loads((out / "results.json").read_text())["summary"]["distance"] == norm
    model, (inputs, labels) = load_model("smallcnn-fmnist"), sample()
    adv = fmn(model, inputs[:6], labels[:6], norm=norm, steps=8)
    direct = (adv - inputs[:6]).flatten(1).norm(p={"l1": 1, "linf": math.inf}[norm], dim=1)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    succeeded = [(row["distances"][norm], float(direct[row["index"]])) for row in rows if row["success"]]
    assert succeeded and all(reported == pytest.approx(expected, rel=1e-5) for reported, expected in succeeded)


def test_version_and_module_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "edgewise", "--version"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == f"edgewise {__version__}"


def test_models_lists_the_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert "smallcnn-fmnist" in capsys.readouterr().out


def test_trace_writes_the_per_step_medians(tmp_path: Path) -> None:
    out = tmp_path / "alma"
    status = main(["attack", "--attack", "alma", "--distance", "l2", "--steps", "12", "--n", "6", "--out", str(out),
                   "--no-progress", "--trace"])
    assert status == 0
    trace = json.loads((out / "trace.json").read_text())
    assert trace["steps"] == 12 and trace["samples"] == 6
    for key in ("mu", "rho", "lr", "distance"):
        values = trace["median"][key]
        assert len(values) == 12 and all(v is not None and math.isfinite(v) for v in values), key
    assert trace["median"]["mu"][0] == 1.0 and trace["median"]["rho"][0] == 1.0  # μ⁽⁰⁾ = ρ⁽⁰⁾ = 1 (Algorithm 2)
    best = trace["median"]["best_distance"]
    assert len(best) == 12 and best[-1] is not None and math.isfinite(best[-1])
    assert (out / "trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_a_traced_rerun_traces_every_batch(tmp_path: Path) -> None:
    # Before: a traced run into its own --out (a resumed run, or the same command again) reused the finished
    # batches, whose steps the callback never saw: trace.json held the medians of the recomputed batches only
    # (steps 0, samples 0 when all were finished).
    out = tmp_path / "traced"
    argv = ["attack", "--model", "tinymlp-fmnist", "--attack", "ddn", "--steps", "4", "--n", "6", "--batch-size", "4",
            "--no-progress", "--no-checks", "--trace", "--out", str(out)]
    assert main(argv) == 0
    first, rows = json.loads((out / "trace.json").read_text()), (out / "samples.jsonl").read_text()
    assert first["steps"] == 4 and first["samples"] == 6
    assert main(argv) == 0
    assert json.loads((out / "trace.json").read_text()) == first
    strip = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in rows.splitlines()]
    again = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (out / "samples.jsonl").read_text().splitlines()]
    assert again == strip


def test_trace_of_an_attack_without_a_callback_is_refused_before_it_runs(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Before: the attack ran into "auto_steps() got an unexpected keyword argument 'callback'" after the model,
    # the sanity checks and --out had been set up, naming neither --trace nor the attack.
    out = tmp_path / "auto"
    assert main(["attack", "--attack", "auto", "--steps", "2", "--n", "2", "--trace", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("edgewise: error: --trace: attack 'auto' takes no callback, so there is nothing to trace; "
                   "attacks that take one: alma, apgd, apgd_minimal, cw, ddn, fab, fab_t, fmn, pgd, pgd_minimal, "
                   "sigma_zero")
    assert not out.exists()


def test_levels_reach_an_attack_that_quantizes(tmp_path: Path, rows) -> None:
    # ddn quantized its iterates to its own 256 levels while --levels 4 verified them on 4: 19 of 30 examples
    # failed re-verification (success 37% where ddn told the levels reaches 53%).
    outs = {}
    for name, extra in (("flag", []), ("both", ["--attack-options", '{"levels": 4}'])):
        outs[name] = tmp_path / name
        assert main(["attack", "--model", "tinymlp-fmnist", "--attack", "ddn", "--steps", "10", "--n", "12",
                     "--levels", "4", *extra, "--no-checks", "--no-progress", "--out", str(outs[name])]) == 0
    def timeless(out: Path) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows(out)]

    assert timeless(outs["flag"]) == timeless(outs["both"])
    assert all(row["verified"] for row in rows(outs["flag"]))
    assert main(["attack", "--attack", "ddn", "--levels", "4", "--attack-options", '{"levels": 16}']) == 2


def test_fab_options_reach_fab(tmp_path: Path, rows) -> None:
    # fab took its own options only as **options, which --attack-options refused by name ('restarts'); each run now
    # gives the distances of the library call with the same options, and two restarts are another attack than one.
    model = load_model("tinymlp-fmnist")
    inputs, labels = sample()
    found = {}
    for restarts in (1, 2):
        out = tmp_path / str(restarts)
        assert main(["attack", "--model", "tinymlp-fmnist", "--attack", "fab", "--steps", "60", "--n", "8",
                     "--attack-options", json.dumps({"restarts": restarts}), "--no-checks", "--no-progress",
                     "--out", str(out)]) == 0
        found[restarts] = [row["distances"]["l2"] for row in rows(out)]
        adv = fab(model, inputs[:8], labels[:8], norm="l2", budget=120, restarts=restarts)
        fooled = model(adv).argmax(1) != labels[:8]
        expected = [d if hit else None for d, hit in zip((adv - inputs[:8]).flatten(1).norm(dim=1).tolist(),
                                                          fooled.tolist(), strict=True)]
        assert [d is None for d in found[restarts]] == [d is None for d in expected]
        assert [d for d in found[restarts] if d is not None] == pytest.approx(
            [d for d in expected if d is not None], rel=1e-5)
    assert found[1] != found[2]
