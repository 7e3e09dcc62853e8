"""Min-max metrics: hand-counted cases and the supplement's own Lift values (Tables A3, A4)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from edgewise.attacks.minmax import asr_all, asr_avg, asr_gp, lift, plot_group_weights, plot_weights
from edgewise.attacks.minmax.apgda import MinMaxResult
from edgewise.attacks.minmax.metrics import accuracy

FOOLED = torch.tensor([[True, True], [True, False], [False, False], [True, True]])
CLEAN = torch.tensor([[False, False], [False, False], [False, False], [True, False]])


def test_asr_all_counts_groups_fooled_everywhere_among_clean_correct() -> None:
    assert asr_all(FOOLED, CLEAN) == 1 / 3  # group 3 was already wrong when clean: left out
    assert asr_gp(FOOLED, CLEAN) == asr_all(FOOLED, CLEAN)


def test_asr_avg_and_accuracy() -> None:
    # Domain 0: clean-correct groups 0, 1, 2, fooled 0, 1 -> 2/3; domain 1: all four, fooled 0, 3 -> 2/4.
    assert math.isclose(asr_avg(FOOLED, CLEAN), (2 / 3 + 2 / 4) / 2)
    torch.testing.assert_close(accuracy(FOOLED), torch.tensor([0.25, 0.5], dtype=torch.float64))


def test_lift_reproduces_the_supplement() -> None:
    # Table A3 (ℓ0, ℓ1) and Table A4 (model A): ASR pairs and the published Lift.
    assert round(100 * lift(73.83, 66.56), 2) == 10.92
    assert round(100 * lift(83.13, 66.23), 2) == 25.52
    assert round(100 * lift(59.17, 55.97), 2) == 5.72
    assert lift(0.5, 0.0) is None


def test_plot_weights_writes_a_png(tmp_path: Path) -> None:
    history = torch.tensor([[[0.5, 0.5]], [[0.7, 0.3]]])
    result = MinMaxResult(adv=torch.zeros(1, 1), weights=history[-1], history=history, fooled=FOOLED[:1],
                          clean_fooled=CLEAN[:1])
    path = tmp_path / "weights.png"
    plot_weights([("minmax", result)], ["A", "B"], path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_group_weights_writes_a_png_and_checks_the_images(tmp_path: Path) -> None:
    weights = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    result = MinMaxResult(adv=torch.zeros(4, 1, 5, 5), weights=weights, history=weights.unsqueeze(0),
                          fooled=FOOLED[:2], clean_fooled=CLEAN[:2])
    path = tmp_path / "groups.png"
    plot_group_weights(torch.rand(4, 1, 5, 5), result, path, title="test")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"inputs must be images \(N, C, H, W\) holding 2 groups of 2"):
        plot_group_weights(torch.rand(3, 1, 5, 5), result, path, title="test")
