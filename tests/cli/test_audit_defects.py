"""Three defects found by an audit of ``edgewise attack``, each reproduced on the command line (these tests failed
before the fix): --targeted measured clean accuracy against the targets, --attack-options values were silently
replaced by --steps / --distance, and NaN logits counted as "broken at distance 0"."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from edgewise.cli import main
from edgewise.data import sample
from edgewise.data.fashion_mnist import CLASSES
from edgewise.eval import report

Rows = Callable[[Path], list[dict[str, Any]]]
ErrorLine = Callable[[], str]
QUIET = ["--no-progress"]
MODELS = '''
import torch
from torch import nn


def mlp():
    # Random weights: most samples misclassified.
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


class NaNMostly(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, x):
        # NaN for 3 of every 4 rows of a batch.
        out = self.net(x)
        return torch.where(torch.arange(len(x)).unsqueeze(1) % 4 != 3, float("nan"), out)
'''


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def build(path: Path, name: str) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("audit_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model: torch.nn.Module = getattr(module, name)().eval()
    return model


@pytest.mark.usefixtures("single_thread")
def test_targeted_clean_accuracy_is_against_the_true_labels(models: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, rows: Rows) -> None:
    # Before: clean accuracy 94% for this random model ("not already predicted as the target"), `label` held the
    # target and the true label was recorded nowhere.
    figures: list[Figure] = []
    monkeypatch.setattr(report.plt, "close", figures.append)
    out = tmp_path / "targeted"
    assert main(["attack", "--model", f"{models}:mlp", "--attack", "ddn", "--targeted", "--n", "16", "--steps",
                 "20", "--out", str(out), *QUIET]) == 0
    inputs, labels = sample()
    with torch.no_grad():
        predicted = build(models, "mlp")(inputs[:16]).argmax(1)
    correct = predicted == labels[:16]
    assert 0 < int(correct.sum()) < 8  # the case of the defect: a model mostly wrong
    found = rows(out)
    assert [row["label"] for row in found] == labels[:16].tolist()
    assert [row["target"] for row in found] == ((labels[:16] + 1) % 10).tolist()
    assert [row["clean_correct"] for row in found] == correct.tolist()
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    assert summary["clean_accuracy"] == pytest.approx(float(correct.double().mean()))
    broken = [row for row in found if row["clean_correct"]]
    assert summary["success_rate_on_correct"] == pytest.approx(sum(r["success"] for r in broken) / len(broken))
    assert summary["median_distance_on_correct"] == pytest.approx(
        float(torch.tensor([r["distances"]["l2"] for r in broken]).median()))
    assert all(value <= summary["clean_accuracy"] for value in summary["robust_accuracy"].values())
    assert results["provenance"]["targets"] == "(y + 1) mod 10"
    # robust_accuracy.png starts at the clean accuracy: a misclassified sample is robust at no budget.
    (curve,) = [figure for figure in figures if figure.axes[0].get_ylabel() == "robust accuracy (%)"]
    assert curve.axes[0].get_lines()[0].get_ydata()[0] == pytest.approx(100 * float(correct.double().mean()))
    # examples.png: only clean-correct samples, titled with their true class.
    grids = [figure for figure in figures if len(figure.axes) % 3 == 0 and len(figure.axes) > 1]
    (grid,) = grids
    columns = len(grid.axes) // 3
    titles = [axis.get_title() for axis in np.array(grid.axes).reshape(3, columns)[0]]
    shown = [int(title.split("\n")[0][1:]) for title in titles]
    assert all(bool(correct[i]) for i in shown)
    assert titles == [f"#{i}\n{CLASSES[int(labels[i])]}" for i in shown]


@pytest.mark.parametrize(("argv", "message"), [
    (["--attack", "fmn", "--steps", "10", "--attack-options", '{"steps": 3}'],
     "--attack-options sets steps=3, which conflicts with --steps 10: give it once"),
    (["--attack", "fmn", "--distance", "linf", "--attack-options", '{"norm": "l1"}'],
     "--attack-options sets norm='l1', which conflicts with --distance linf: give it once"),
    (["--attack", "alma", "--distance", "l1", "--attack-options", '{"distance": "l2"}'],
     "--attack-options sets distance='l2', which conflicts with --distance l1: give it once"),
])
def test_attack_options_conflicting_with_steps_or_distance_are_refused(argv: list[str], message: str, tmp_path: Path,
                                                                       one_error_line: ErrorLine) -> None:
    # Before: the attack ran with --steps / --distance while results.json recorded the dropped values.
    out = tmp_path / "x"
    assert main(["attack", *argv, "--n", "2", "--out", str(out), *QUIET]) == 2
    assert one_error_line() == f"edgewise: error: {message}"
    assert not out.exists()


def test_attack_options_equal_to_steps_and_distance_pass(tmp_path: Path) -> None:
    out = tmp_path / "same"
    assert main(["attack", "--attack", "fmn", "--steps", "2", "--distance", "linf", "--attack-options",
                 '{"steps": 2, "norm": "linf"}', "--n", "2", "--out", str(out), *QUIET]) == 0
    keywords = json.loads((out / "results.json").read_text())["provenance"]["attack"]["keywords"]
    assert keywords["steps"] == 2 and keywords["norm"] == "linf"


@pytest.mark.parametrize("checks", [[], ["--no-checks"]])
def test_nan_logits_are_an_error_not_broken_samples(models: Path, tmp_path: Path, checks: list[str],
                                                    one_error_line: ErrorLine) -> None:
    # Before: clean accuracy 0%, success 100%, every sample verified (the argmax of a NaN row is 0).
    out = tmp_path / "nan"
    # The error names the dataset indices (from --offset 10 on), with the sanity checks on or off.
    assert main(["attack", "--model", f"{models}:NaNMostly", "--n", "8", "--offset", "10", "--steps", "2",
                 "--out", str(out), *checks, *QUIET]) == 2
    assert one_error_line() == ("edgewise: error: model must return finite logits, got NaN or inf for 6 of 8 "
                                      "inputs (dataset indices 10, 11, 12, 14, 15, ...)")
    assert not (out / "results.json").exists()
