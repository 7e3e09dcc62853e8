"""What ``--trace`` writes, read back: trace.json's per-step medians and the figure's panels (savefig intercepted,
so the figure objects are inspected: one panel per group of keys, each curve the medians, one step axis)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from edgewise.eval.trace import Trace, write_trace


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    figures: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: figures.append(self))
    return figures


def _trace() -> Trace:
    # Two batches of 3 and 2 samples, 4 steps; keys of all three panels. The best distance has no finite value
    # at step 0 (no adversarial yet), the constraint is of no panel, the flag is not floating-point.
    trace = Trace()
    for batch in (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0])):
        for step in range(4):
            best = torch.full_like(batch, math.inf) if step == 0 else batch / (step + 1)
            trace(step, {"mu": batch * (step + 1), "rho": torch.ones_like(batch), "distance": batch - 5,
                         "best_distance": best, "lr": batch * 0.1, "constraint": -batch,
                         "adversarial": batch > 2})
    return trace


def test_trace_json_holds_the_median_over_samples_of_the_finite_values(tmp_path: Path, saved) -> None:
    record = write_trace(tmp_path, _trace(), title="alma")
    assert json.loads((tmp_path / "trace.json").read_text()) == record
    assert record["steps"] == 4 and record["samples"] == 5
    assert record["statistic"] == "median over samples of the finite values"
    # pooled over the two batches, 5 values per step: the median is the third smallest
    assert record["median"]["mu"] == [3.0 * (step + 1) for step in range(4)]
    assert record["median"]["best_distance"] == [None] + [3.0 / (step + 1) for step in range(1, 4)]
    assert record["median"]["constraint"] == [-3.0] * 4
    assert "adversarial" not in record["median"]


def test_the_figure_has_one_panel_per_group_on_a_shared_step_axis(tmp_path: Path, saved) -> None:
    record = write_trace(tmp_path, _trace(), title="alma")
    (figure,) = saved
    axes = figure.axes
    assert [axis.get_ylabel() for axis in axes] == ["penalty (μ, ρ, c)", "distance", "step size"]
    for axis, keys in zip(axes, (("mu", "rho"), ("distance", "best_distance"), ("lr",)), strict=True):
        lines = {line.get_label(): line for line in axis.get_lines()}
        assert sorted(lines) == sorted(keys)
        for key in keys:  # each curve is the medians, NaN (a gap) where none was finite
            expected = [math.nan if v is None else v for v in record["median"][key]]
            np.testing.assert_array_equal(lines[key].get_ydata(), expected)
            np.testing.assert_array_equal(lines[key].get_xdata(), range(4))
    # log scale where every value shown is positive; the distance panel has negative medians
    assert [axis.get_yscale() for axis in axes] == ["log", "linear", "log"]
    assert [axis.get_xlabel() for axis in axes] == ["", "", "step"]  # one step axis, labelled at the bottom
    assert all(axes[0].get_shared_x_axes().joined(axes[0], axis) for axis in axes[1:])
    assert axes[0].get_title() == "alma (median over 5 samples)"
    height = figure.get_size_inches()[1]
    assert all(axis.get_position().height * height >= 1.5 for axis in axes)  # each panel readable


def test_an_empty_trace_writes_no_steps(tmp_path: Path, saved) -> None:
    record = write_trace(tmp_path, Trace(), title="nothing")
    assert record["steps"] == 0 and record["samples"] == 0 and record["median"] == {}
    assert json.loads((tmp_path / "trace.json").read_text())["steps"] == 0
    (figure,) = saved
    assert len(figure.axes) == 1
