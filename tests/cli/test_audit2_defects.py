"""Defects found by the second CLI audit (minmax, train, benchmark); each test failed before its fix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from edgewise.cli import main

QUIET = ["--no-progress"]
Rows = Callable[[Path], list[dict[str, Any]]]
ErrorLine = Callable[[], str]

NET_PY = """
from torch import nn


def build(hidden=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))
"""


def net(folder: Path, hidden: int, seed: int) -> tuple[str, str]:
    """``folder/net.py:build`` and a state dict of it with ``hidden`` units (seeded weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(NET_PY)
    namespace: dict[str, Any] = {}
    exec(NET_PY, namespace)
    torch.manual_seed(seed)
    torch.save(namespace["build"](hidden=hidden).state_dict(), folder / f"net-{hidden}.pt")
    return f"{folder / 'net.py'}:build", str(folder / f"net-{hidden}.pt")


def test_an_ensemble_of_one_spec_built_twice_keeps_both_models(tmp_path: Path, rows: Rows) -> None:
    # Before: the models were keyed by their spec, so --model X,X with two --model-args kept only the second: an
    # "ensemble" of one model (weights of length 1) under the name of two.
    spec, five = net(tmp_path, 5, 0)
    _, six = net(tmp_path, 6, 1)
    out = tmp_path / "o"
    assert main(["minmax", "--model", f"{spec},{spec}", "--model-args", '{"hidden": 5}', "--model-args",
                 '{"hidden": 6}', "--weights", five, "--weights", six, "--distance", "l2", "--eps", "1",
                 "--steps", "1", "--n", "4", "--out", str(out), *QUIET]) == 0
    names = [f"{spec}#1", f"{spec}#2"]
    results = json.loads((out / "results.json").read_text())
    assert results["results"][",".join(names)]["1"]["domains"] == names
    assert list(results["models"]) == names
    assert [m["model_args"] for m in json.loads((out / "run.json").read_text())["models"].values()] == [
        {"hidden": 5}, {"hidden": 6}]
    assert all(len(row["weights"]) == 2 for row in rows(out))


def test_per_model_runs_never_share_a_batch_folder(tmp_path: Path, one_error_line: ErrorLine) -> None:
    # Before: a/net.py:build and b/net.py:build both kept their batches under batches/net.py_build, so the second
    # model (another network) was handed the first one's results.
    first, _ = net(tmp_path / "a", 8, 0)
    second, _ = net(tmp_path / "b", 3, 1)
    out = tmp_path / "o"
    assert main(["minmax", "--kind", "universal", "--group-size", "2", "--model", f"{first},{second}",
                 "--distance", "l2", "--eps", "1", "--steps", "1", "--n", "4", "--out", str(out), *QUIET]) == 2
    assert "give the same folder name twice" in one_error_line()
    assert not out.exists()  # refused before anything ran or was written


def test_a_fractional_l0_budget_is_refused(tmp_path: Path, one_error_line: ErrorLine) -> None:
    # Before: the l0 projection keeps floor(eps) input values, so --eps 0.5 ran with no perturbation at all and
    # reported the clean accuracy as "eps=0.5" (and --eps 1,1.5 printed two budgets computed as one).
    assert main(["minmax", "--model", "A", "--distance", "l0", "--eps", "1,0.5", "--steps", "1", "--n", "2",
                 "--out", str(tmp_path / "o"), *QUIET]) == 2
    error = one_error_line()
    assert "eps must be a whole number with norm 'l0'" in error and "got 0.5" in error
    assert not (tmp_path / "o").exists()  # refused before any batch ran


def test_train_refuses_to_resume_another_runs_checkpoint(tmp_path: Path, one_error_line: ErrorLine) -> None:
    # Before: `train --lr 0.001` in the --out of a `--lr 0.1` run continued its checkpoint (weights and optimizer,
    # so lr 0.1 throughout) and wrote lr 0.001 into NAME.json.
    from edgewise.data import load, stack
    from edgewise.data.idx import write_idx

    inputs, labels = stack(load("sample"), range(16))
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", (inputs[:, 0] * 255).round().to(torch.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels.to(torch.uint8))
    argv = ["train", "--architecture", "tinymlp", "--data", str(tmp_path), "--batch-size", "8", "--name", "m",
            "--out", str(tmp_path / "run"), *QUIET]
    assert main([*argv, "--epochs", "1", "--lr", "0.1"]) == 0
    assert main([*argv, "--epochs", "2", "--lr", "0.001"]) == 2
    assert "holds a checkpoint of a run with lr=0.1, this run has lr=0.001" in one_error_line()
    assert json.loads((tmp_path / "run" / "m.json").read_text())["recipe"]["lr"] == 0.1


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_a_bad_exact_time_limit_is_refused_before_any_attack(value: str, tmp_path: Path,
                                                             one_error_line: ErrorLine) -> None:
    # Before: every attack cell ran first, then the solver refused "time_limit must be > 0" (not naming the
    # option); without --exact the option was silently ignored (now a RULES case, tests/cli/test_defects.py).
    assert main(["benchmark", "--model", "tinymlp-fmnist", "--attack", "ddn", "--steps", "1", "--n", "2", "--exact",
                 f"--exact-time-limit={value}", "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert f"--exact-time-limit must be a finite number of seconds > 0, got {float(value)}" in one_error_line()
    assert not (tmp_path / "o").exists()


def test_a_repeated_transform_is_refused(tmp_path: Path, one_error_line: ErrorLine) -> None:
    # Before: the domains were keyed by name, so --transforms hflip,hflip --random (two random draws) printed and
    # recorded the second draw's accuracy in both columns (12.50 | 12.50 where samples.jsonl had 0% for the first).
    assert main(["minmax", "--kind", "transform", "--model", "A", "--transforms", "hflip,identity,hflip", "--random",
                 "--steps", "1", "--n", "2", "--out", str(tmp_path / "o"), *QUIET]) == 2
    assert "--transforms must name each transformation once, got hflip more than once" in one_error_line()


@pytest.mark.parametrize(("argv", "message"), [
    (["--attack", "ddn", "--steps", "2,3,2"], "--steps 2,3,2 give ddn the same steps 2 more than once"),
    (["--attack", "cw-l2", "--budget", "40", "--steps", "10,11"],
     "--steps 10,11 give cw-l2 the same steps 1 (steps per round of its 9 rounds under budget 40) more than once"),
])
def test_benchmark_refuses_steps_that_repeat_a_cell(argv: list[str], message: str, tmp_path: Path,
                                                    one_error_line: ErrorLine) -> None:
    # Before: --steps 2,2 ran one cell, loaded it again and reported it twice: the summary of one model said
    # "models": 2 (and the geometric means were over the duplicate).
    assert main(["benchmark", "--model", "tinymlp-fmnist", *argv, "--n", "2", "--out", str(tmp_path / "o"),
                 *QUIET]) == 2
    assert message in one_error_line()
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "tinymlp-fmnist", "--distance", "l0", "--attack", "fmn-l0"],
     "--exact certifies --distance linf, l1, l2, got --distance l0"),
    (["--model", "lenet-kwta-fmnist", "--attack", "ddn"], "--exact: --model lenet-kwta-fmnist: model: edgewise.exact "
                                                          "supports networks of"),
])
def test_benchmark_exact_refuses_what_it_cannot_certify_before_any_attack(argv: list[str], message: str,
                                                                          tmp_path: Path,
                                                                          one_error_line: ErrorLine) -> None:
    # Before: every attack cell ran (kept under --out/cells), then the solver refused ("norm must be one of ...").
    assert main(["benchmark", *argv, "--steps", "1", "--n", "2", "--exact", "--out", str(tmp_path / "o"),
                 *QUIET]) == 2
    assert message in one_error_line()
    assert not (tmp_path / "o").exists()


def test_minmax_records_the_samples_it_attacked(tmp_path: Path, rows: Rows) -> None:
    # Before: results.json recorded only the asked --n and the data without its samples: no recorded figure said
    # which samples the results are over (an --n that is not a multiple of --group-size is refused: test_defects).
    out = tmp_path / "o"
    assert main(["minmax", "--kind", "universal", "--model", "A", "--group-size", "5", "--n", "10", "--steps", "1",
                 "--out", str(out), *QUIET]) == 0
    data = json.loads((out / "results.json").read_text())["provenance"]["data"]
    groups = [row for row in rows(out) if row["strategy"] == "minmax"]
    assert data["n"] == 5 * len(groups) == 10 and data["num_samples"] == 1000


@pytest.mark.parametrize(("option", "message"), [
    (["--train-samples", "100", "--batch-size", "8"],
     "--train-samples must be at most the 16 training images, got 100"),
    (["--batch-size", "32"], "--batch-size must be at most the 16 training images, got 32"),
    # Before: a milestone at or after the last epoch was accepted and the lr never decayed.
    (["--lr-milestones", "5"], "--lr-milestones must be increasing, each >= 1 and < --epochs (a decay after the "
                               "last epoch never applies), got [5] with --epochs 1"),
])
def test_train_errors_name_the_options(option: list[str], message: str, tmp_path: Path,
                                       one_error_line: ErrorLine) -> None:
    from edgewise.data import load, stack
    from edgewise.data.idx import write_idx

    inputs, labels = stack(load("sample"), range(16))
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", (inputs[:, 0] * 255).round().to(torch.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels.to(torch.uint8))
    assert main(["train", "--architecture", "tinymlp", "--data", str(tmp_path), "--epochs", "1", *option,
                 "--out", str(tmp_path / "run"), *QUIET]) == 2
    assert one_error_line() == f"edgewise: error: {message}"
