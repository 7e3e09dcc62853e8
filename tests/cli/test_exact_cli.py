import json
import re
from pathlib import Path

import pytest

from edgewise.cli import main

pytest.importorskip("pyscipopt")


def test_exact_writes_the_comparison_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exact"
    argv = ["exact", "--model", "tinymlp-pgd-fmnist", "--distance", "linf", "--n", "2", "--steps", "10",
            "--attack", "fmn-linf", "--time-limit", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "certified optimal:" in printed and "fmn-linf: median ratio" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["n"] == 2 and set(results["summary"]["attacks"]) == {"fmn-linf"}
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for line in lines:
        # The attack's verified distance can never be below the certified lower bound.
        assert line["attacks"]["fmn-linf"] >= line["lower_bound"] * (1 - 1e-6)
    assert (out / "attack_vs_exact.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    solved = sorted((out / "exact" / "samples").iterdir())
    stamps = [p.stat().st_mtime_ns for p in solved]
    assert main(argv) == 0  # everything is loaded, nothing solved again
    assert [p.stat().st_mtime_ns for p in solved] == stamps
    assert [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()] == lines
    # Another model's solved samples are never handed back: the folder is refused in one line naming the key.
    other = [*argv[:2], "tinymlp-fmnist", *argv[3:]]
    assert main(other) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "model.spec='tinymlp-pgd-fmnist'" in error
    assert main([*argv, "--gap", "0.01"]) == 2 and "gap=0.0001" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["exact", "--distance", "l0"], "--distance: invalid choice"),
        (["exact", "--time-limit", "0"], "--time-limit must be a finite number of seconds > 0"),
        (["exact", "--attack", "nope"], "is not in the registry"),
        (["exact", "--distance", "l1", "--attack", "fmn-linf"], "minimizes 'linf'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(match, err), err


def test_benchmark_exact_writes_the_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["benchmark", "--model", "tinymlp-pgd-fmnist", "--attack", "fmn-linf", "--distance", "linf",
            "--steps", "10", "--n", "1", "--exact", "--exact-time-limit", "3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((out / "exact-tinymlp-pgd-fmnist.json").read_text())
    assert summary["n"] == 1 and summary["norm"] == "linf" and set(summary["attacks"]) == {"fmn-linf 10"}
    assert (out / "exact" / "tinymlp-pgd-fmnist" / "attack_vs_exact.png").is_file()


def test_benchmark_exact_never_hands_back_another_images_result(tmp_path: Path) -> None:
    # Two runs into one folder, the second on the next image (the record leaves --n/--offset out: a larger --n
    # solves only the missing samples). Each solved sample is kept under its dataset index with its input's
    # digest, so the second run solves image 1 instead of reusing image 0's result.
    import torch

    from edgewise.data import sample
    from edgewise.eval.provenance import fingerprint_tensor

    out = tmp_path / "bench"
    argv = ["benchmark", "--model", "tinymlp-pgd-fmnist", "--attack", "fmn-linf", "--distance", "linf",
            "--steps", "10", "--n", "1", "--exact", "--exact-time-limit", "3", "--out", str(out), "--no-progress"]
    assert main([*argv, "--offset", "0"]) == 0
    assert main([*argv, "--offset", "1"]) == 0
    inputs, _ = sample()
    solved = out / "exact" / "tinymlp-pgd-fmnist" / "exact" / "samples"
    assert sorted(p.name for p in solved.iterdir()) == ["0.pt", "1.pt"]
    for index in (0, 1):
        stored = torch.load(solved / f"{index}.pt", weights_only=True)
        assert stored["input_sha256"] == fingerprint_tensor(inputs[index])


def test_run_exact_solves_again_a_sample_whose_input_changed(tmp_path: Path) -> None:
    import torch
    from torch import nn

    from edgewise.exact.run import run_exact

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3)).eval()
    first, second = torch.rand(1, 3), torch.rand(1, 3)
    labels = model(torch.cat([first, second])).argmax(1)
    one = run_exact(model, first, labels[:1], norm="linf", time_limit=5, folder=tmp_path, progress=False)
    # The same position (no indices), another input: solved for that input, not handed the first one's.
    two = run_exact(model, second, labels[1:], norm="linf", time_limit=5, folder=tmp_path, progress=False)
    fresh = run_exact(model, second, labels[1:], norm="linf", time_limit=5, folder=tmp_path / "fresh",
                      progress=False)
    assert torch.equal(two.adversarial, fresh.adversarial) and torch.equal(two.distance, fresh.distance)
    assert not torch.equal(one.adversarial, two.adversarial)


MODULES = '''
from torch import nn


def tanh_mlp(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.Tanh(), nn.Linear(8, num_classes))
'''


def test_exact_refuses_a_model_or_data_it_cannot_use_before_any_attack(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    (tmp_path / "models.py").write_text(MODULES)
    images = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "five.npz", x=images, y=np.arange(4) % 5, classes=np.array(list("abcde")))
    np.savez(tmp_path / "rgb.npz", x=np.repeat(images, 3, axis=1), y=np.arange(4))
    cases = [
        (["--model", f"{tmp_path / 'models.py'}:tanh_mlp"], "Tanh"),
        (["--data", str(tmp_path / "five.npz")], "classes"),
        (["--data", str(tmp_path / "rgb.npz")], "cannot take"),
    ]
    for extra, match in cases:
        out = tmp_path / f"out-{len(match)}"
        argv = ["exact", "--model", "tinymlp-fmnist", "--n", "2", "--steps", "5", "--attack", "fmn-linf",
                "--time-limit", "2", "--out", str(out), "--no-progress", *extra]
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and match in error, error
        assert not (out / "attacks").exists(), "the attacks ran before the refusal"


def test_exact_skips_a_missing_library_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "foolbox", None)
    out = tmp_path / "exact"
    argv = ["exact", "--model", "tinymlp-pgd-fmnist", "--n", "1", "--steps", "5", "--attack",
            "fmn-linf,foolbox:fmn-linf", "--time-limit", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err.count("skipping foolbox:fmn-linf: foolbox is not installed") == 1
    assert set(json.loads((out / "results.json").read_text())["summary"]["attacks"]) == {"fmn-linf"}


@pytest.mark.parametrize("norm", ["linf", "l1", "l2"])
def test_the_default_attacks_resolve_and_minimize_the_norm(norm: str) -> None:
    # `edgewise exact` without --attack runs these: resolve refuses a misspelt name or one of another norm, and
    # auto (the strongest, the tightest upper bound) comes first.
    from edgewise.cli.benchmark import attack_specs
    from edgewise.exact.run import ATTACKS

    specs = attack_specs(list(ATTACKS[norm]), distance=norm, baselines=False)
    assert [spec.name for spec in specs] == list(ATTACKS[norm]) and specs[0].name == "auto"


def test_no_attack_left_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "foolbox", None)
    assert main(["exact", "--attack", "foolbox:fmn-linf", "--n", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("edgewise: error: --attack: nothing to run (every requested attack was skipped: its library "
                       "is missing)")


def test_benchmark_leaves_no_exact_report_of_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Before: a run without --exact (or one refused by the solver's record after every cell ran) left the earlier
    # run's exact-MODEL.json beside its new report.md: ratios of other --steps, --attack or samples.
    out = tmp_path / "bench"
    argv = ["benchmark", "--model", "tinymlp-pgd-fmnist", "--attack", "fmn-linf", "--distance", "linf",
            "--steps", "10", "--n", "1", "--out", str(out), "--no-progress"]
    assert main([*argv, "--exact", "--exact-time-limit", "3"]) == 0
    report = (out / "report.md").read_text()
    # Another time limit is refused before any cell runs, naming it; the earlier report is left whole.
    assert main([*argv, "--steps", "11", "--exact", "--exact-time-limit", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "time_limit=3.0, this run has time_limit=4.0" in err, err
    assert (out / "report.md").read_text() == report and (out / "exact-tinymlp-pgd-fmnist.json").is_file()
    assert not (out / "cells" / "tinymlp-pgd-fmnist" / "fmn-linf" / "steps-11").exists()
    assert main([*argv, "--steps", "11"]) == 0
    assert not (out / "exact-tinymlp-pgd-fmnist.json").exists()
    assert not (out / "exact" / "tinymlp-pgd-fmnist" / "attack_vs_exact.png").exists()


def test_an_interrupted_exact_run_leaves_no_report_of_the_run_before(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: exact never deleted the previous run's results.json, samples.jsonl and plot, so a rerun with a
    # larger --n interrupted during the solver left the 2-sample report as the folder's result.
    import edgewise.cli.exact

    out = tmp_path / "exact"
    argv = ["exact", "--model", "tinymlp-pgd-fmnist", "--distance", "linf", "--n", "2", "--steps", "10",
            "--attack", "fmn-linf", "--time-limit", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(edgewise.cli.exact, "certify_against", interrupted)
    assert main([*argv[:6], "3", *argv[7:]]) == 130
    assert not any((out / name).exists() for name in ("results.json", "samples.jsonl", "attack_vs_exact.png"))
