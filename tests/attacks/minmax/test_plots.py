"""What the min-max figures show, read back from the figure objects (savefig intercepted): the bars are the mean
weights, side by side, with the uniform 1/K line; the group figure shows each input as it is (grey levels in
[0, 1]) with its weight, whether it was fooled, and the group's number."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from edgewise.attacks.minmax import plot_group_weights, plot_weights
from edgewise.attacks.minmax.apgda import MinMaxResult


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    figures: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: figures.append(self))
    return figures


def _result(weights: torch.Tensor, fooled: torch.Tensor) -> MinMaxResult:
    history = torch.stack([torch.full_like(weights, 1 / weights.shape[1]), weights])
    return MinMaxResult(adv=torch.zeros(1), weights=weights, history=history, fooled=fooled,
                        clean_fooled=torch.zeros_like(fooled))


def test_weight_bars_are_the_mean_weights_side_by_side(saved: list[Figure], tmp_path: Path) -> None:
    first = _result(torch.tensor([[0.2, 0.5, 0.3], [0.4, 0.3, 0.3]]), torch.zeros(2, 3, dtype=torch.bool))
    second = _result(torch.tensor([[0.6, 0.2, 0.2], [0.6, 0.3, 0.1]]), torch.zeros(2, 3, dtype=torch.bool))
    plot_weights([("minmax", first), ("average", second)], ["A", "B", "C"], tmp_path / "w.png", title="T")
    (figure,) = saved
    bars = figure.axes[0]
    patches = bars.patches
    assert len(patches) == 6
    heights = [p.get_height() for p in patches]
    np.testing.assert_allclose(heights, [0.3, 0.4, 0.3, 0.6, 0.25, 0.15])
    spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in patches)
    assert all(end <= start + 1e-12 for (_, end), (start, _) in itertools.pairwise(spans))  # no overlap
    assert all(p.get_width() == pytest.approx(0.4) for p in patches)
    assert any(line.get_ydata()[0] == pytest.approx(1 / 3) for line in bars.lines)  # the uniform weight
    assert bars.get_ylabel() == "domain weight w (mean ± std over inputs)"
    assert figure.get_suptitle() == "T"


def test_the_uniform_weight_is_a_dotted_grey_line_across_the_bars(saved: list[Figure], tmp_path: Path) -> None:
    # The docstring's key to the figure: the dotted grey line is 1/K, told apart from the bars' solid error bars.
    result = _result(torch.tensor([[0.2, 0.5, 0.3, 0.0]]), torch.zeros(1, 4, dtype=torch.bool))
    plot_weights([("minmax", result)], ["A", "B", "C", "D"], tmp_path / "w.png", title="T")
    bars = saved[0].axes[0]
    (uniform,) = [line for line in bars.lines if line.get_linestyle() == ":"]
    assert list(uniform.get_ydata()) == [0.25, 0.25] and list(uniform.get_xdata()) == [0, 1]  # axes width
    assert uniform.get_color() == "gray"
    assert [text.get_text() for text in bars.get_legend().get_texts()] == ["minmax"]


def test_group_figure_shows_the_inputs_weights_and_outcomes(saved: list[Figure], tmp_path: Path) -> None:
    inputs = torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    fooled = torch.tensor([[True, False], [False, True]])
    plot_group_weights(inputs, _result(torch.tensor([[0.25, 0.75], [0.5, 0.5]]), fooled), tmp_path / "g.png",
                       title="groups")
    (figure,) = saved
    axes = np.array(figure.axes).reshape(2, 2)
    for g in range(2):
        for i in range(2):
            (image,) = axes[g, i].images
            np.testing.assert_array_equal(np.asarray(image.get_array()), inputs[2 * g + i, 0].double().numpy())
            assert image.get_clim() == (0, 1)
            outcome = "fooled" if bool(fooled[g, i]) else "not fooled"
            weight = [[0.25, 0.75], [0.5, 0.5]][g][i]
            assert axes[g, i].get_title() == f"w = {weight:.2f}\n{outcome}"
        assert axes[g, 0].get_ylabel() == f"group {g + 1}" and axes[g, 1].get_ylabel() == ""
    assert figure.get_suptitle() == "groups"
