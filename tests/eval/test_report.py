"""The result files and figures of ``edgewise attack``, read back: results.json and samples.jsonl of a result of
three samples built by hand, the curve figure's axes, and the example grid's pictures and labels (plt.close
intercepted, so the figure objects are inspected after they were saved)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from edgewise.eval import AttackResult, report


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    figures: list[Figure] = []
    monkeypatch.setattr(report.plt, "close", figures.append)
    return figures


def _result(count: int = 3) -> AttackResult:
    # Sample 0 broken at l2 0.5, sample 1 not broken (inf), sample 2 broken at 0.25; grey 4x4 images.
    flags = torch.tensor([True, False, True, True, True, True, True, True][:count])
    generator = torch.Generator().manual_seed(0)
    return AttackResult(
        adversarial=torch.rand(count, 1, 4, 4, generator=generator), labels=torch.arange(count) % 3,
        clean_prediction=torch.arange(count) % 3, adversarial_prediction=(torch.arange(count) + 1) % 3,
        clean_correct=torch.ones(count, dtype=torch.bool), success=flags, verified=torch.ones(count, dtype=torch.bool),
        distances={"l2": torch.tensor([0.5, math.inf, *[0.25] * (count - 2)])},
        forwards=torch.full((count,), 10.0), backwards=torch.full((count,), 5.0),
        first_adversarial=torch.tensor([3, 0, *[4] * (count - 2)]), seconds=torch.full((count,), 0.5),
        non_finite=torch.zeros(count, dtype=torch.bool), stalled=~flags, indices=torch.arange(count) + 100)


def test_results_json_and_samples_jsonl(tmp_path: Path) -> None:
    result = _result()
    summary = {"median_distance": math.inf, "mean_distance": math.nan, "n": 3}
    report.write_results(tmp_path, result, summary, {"steps": 10}, {"seed": 0}, provenance={"model": "m"})
    written = json.loads((tmp_path / "results.json").read_text())
    assert written == {"summary": {"median_distance": None, "mean_distance": None, "n": 3},  # JSON has no inf/nan
                       "arguments": {"steps": 10}, "environment": {"seed": 0}, "provenance": {"model": "m"}}
    report.write_results(tmp_path, result, {"n": 3}, {}, {})
    assert "provenance" not in json.loads((tmp_path / "results.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert rows[1] == {"index": 101, "label": 1, "target": None, "clean_prediction": 1, "clean_correct": True,
                       "success": False, "adversarial_prediction": 2, "verified": True, "non_finite": False,
                       "stalled": True, "distances": {"l2": None}, "forwards": 10.0, "backwards": 5.0,
                       "first_adversarial_forward": 0, "seconds": 0.5}
    assert [row["distances"]["l2"] for row in rows] == [0.5, None, 0.25]


def test_environment_names_the_commit_of_the_checkout_holding_the_package(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    package = Path(report.__file__).parent
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=package, check=False)
    expected = git.stdout.strip() or None  # None where the package is not in a git checkout
    monkeypatch.chdir(tmp_path)  # from any working folder
    environment = report.environment("cpu", 7)
    assert environment["git_commit"] == expected and environment["seed"] == 7 and environment["device"] == "cpu"


def test_the_curve_figure_spans_0_to_100_percent(tmp_path: Path, closed: list[Figure]) -> None:
    report.plot_curves(tmp_path / "one.png", {"ddn": torch.tensor([0.5, 1.0, math.inf])}, distance="l2", title="t")
    axis = closed[0].axes[0]
    assert axis.get_ylim() == (0, 100) and axis.get_ylabel() == "robust accuracy (%)"
    assert axis.get_xlabel() == "budget ε (l2)"
    # one curve: the legend, with the area, inside the axes (as the attack report always had it)
    closed[0].canvas.draw()
    inside, box = axis.get_legend().get_window_extent(), axis.get_window_extent()
    assert box.x0 <= inside.x0 and inside.x1 <= box.x1 and box.y0 <= inside.y0 and inside.y1 <= box.y1
    curves = {f"attack-{i}": torch.tensor([0.1 * (i + 1), 1.0]) for i in range(3)}
    report.plot_curves(tmp_path / "three.png", curves, distance="l2", title="t")
    legend = closed[1].axes[0].get_legend()
    closed[1].canvas.draw()
    columns = {round(text.get_window_extent().x0) for text in legend.get_texts()}
    assert len(columns) == 1  # a few curves: their legend entries one under another, beside the axes
    assert legend.get_window_extent().x0 > closed[1].axes[0].get_window_extent().x1


def test_the_example_grid_shows_originals_adversarials_and_perturbations(tmp_path: Path,
                                                                         closed: list[Figure]) -> None:
    result = _result()
    inputs = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    report.plot_examples(tmp_path / "examples.png", inputs, result, classes=["a", "b", "c"])  # default: l2
    (figure,) = closed
    axes = np.array(figure.axes).reshape(3, 2)  # the two broken samples, 0 and 2
    for column, i in enumerate((0, 2)):
        delta = result.adversarial[i] - inputs[i]
        amplified = 0.5 + delta / (2 * float(delta.abs().max()))
        for row, expected in enumerate((inputs[i], result.adversarial[i], amplified)):
            (image,) = axes[row, column].images
            np.testing.assert_allclose(np.asarray(image.get_array()), expected[0].numpy(), rtol=1e-6)
            assert image.get_cmap().name == "gray" and image.get_clim() == (0, 1)
    assert axes[1, 0].get_title() == "→ b\nl2 0.500" and axes[1, 1].get_title() == "→ a\nl2 0.250"
    assert axes[0, 1].get_title() == "#102\nc"
    assert [axis.get_ylabel() for axis in axes[:, 0]] == ["original", "adversarial", "perturbation"]
    assert all(axis.get_ylabel() == "" for axis in axes[:, 1])
    assert len({axis.title.get_fontsize() for axis in axes.flat}) == 1  # every caption at one size


def test_the_example_grid_keeps_every_picture_readable(tmp_path: Path, closed: list[Figure]) -> None:
    result = _result(8)  # 7 broken samples: 7 columns
    report.plot_examples(tmp_path / "examples.png", torch.rand(8, 1, 4, 4), result, classes=["a", "b", "c"])
    figure = closed[0]
    width = figure.get_size_inches()[0]
    assert all(axis.get_position().width * width >= 1.0 for axis in figure.axes)  # at least an inch each
