"""The ALMA-protocol metrics (success rate, mean, robust accuracy and its curve, its ε grid and area, the paired
ratio) against numpy computations of their definitions, on inputs with clean errors (0), failures (inf), ties
and distances within float32 rounding of ε."""

import math

import numpy as np
import pytest
import torch

from edgewise.eval import metrics

INF = float("inf")
DISTANCES = torch.tensor([0.0, 0.3, 0.1, INF, 0.10000002, 0.7, 0.3, INF, 0.1002, 1.2], dtype=torch.float32)


def test_success_rate_and_mean_distance_over_the_successful_samples() -> None:
    success = torch.isfinite(DISTANCES)
    assert metrics.success_rate(success) == pytest.approx(0.8)
    finite = DISTANCES.double().numpy()[success.numpy()]
    assert metrics.mean_distance(DISTANCES, success) == pytest.approx(float(np.mean(finite)), rel=1e-12)
    assert math.isnan(metrics.mean_distance(DISTANCES, torch.zeros(10, dtype=torch.bool)))
    assert math.isnan(metrics.median_distance(torch.tensor([])))


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.5, 1.2, 2.0])
def test_robust_accuracy_is_the_fraction_above_eps_with_the_rounding_margin(eps: float) -> None:
    values = DISTANCES.double().numpy()
    expected = float(np.mean(values > eps * (1 + 1e-5)))
    assert metrics.robust_accuracy(DISTANCES, eps) == pytest.approx(expected, abs=1e-15)
    curve = metrics.robust_accuracy_curve(DISTANCES, torch.tensor([eps, 2 * eps]))
    np.testing.assert_allclose(curve.numpy(), [expected, np.mean(values > 2 * eps * (1 + 1e-5))], atol=1e-15)


def test_robust_accuracy_margin_is_a_float32_rounding_not_more() -> None:
    # 0.10000002 (ε = 0.1 after float32 rounding) is broken at ε = 0.1; 0.1002 is not; exactly ε is broken.
    assert metrics.robust_accuracy(torch.tensor([0.10000002]), 0.1) == 0.0
    assert metrics.robust_accuracy(torch.tensor([0.1002]), 0.1) == 1.0
    assert metrics.robust_accuracy(torch.tensor([0.25], dtype=torch.float64), 0.25) == 0.0


def test_eps_grid_reaches_past_the_largest_finite_distance() -> None:
    grid = metrics.eps_grid_for(DISTANCES)
    np.testing.assert_allclose(grid.numpy(), np.linspace(0, 1.2 * 1.05, 101), rtol=1e-6)
    assert grid.dtype == torch.float64
    assert metrics.robust_accuracy_curve(DISTANCES, grid)[-1] == pytest.approx(0.2)  # only the failures left
    assert len(metrics.eps_grid_for(DISTANCES, points=7)) == 7
    np.testing.assert_allclose(metrics.eps_grid_for(torch.tensor([INF, 0.0])).numpy(), np.linspace(0, 1, 101))
    np.testing.assert_allclose(metrics.eps_grid_for(torch.tensor([])).numpy(), np.linspace(0, 1, 101))


def test_area_under_curve_is_the_trapezoid_rule() -> None:
    grid = torch.tensor([0.0, 0.1, 0.25, 0.6, 1.0])
    accuracy = torch.tensor([0.9, 0.7, 0.4, 0.1, 0.0])
    assert metrics.area_under_curve(grid, accuracy) == pytest.approx(
        float(np.trapezoid(accuracy.double().numpy(), grid.double().numpy())), rel=1e-12)


def test_paired_ratio_against_its_definition() -> None:
    generator = torch.Generator().manual_seed(3)
    theirs = torch.rand(12, generator=generator, dtype=torch.float64) + 0.1
    mine = theirs * torch.exp(0.3 * torch.randn(12, generator=generator, dtype=torch.float64))
    mine[0], theirs[1], mine[2], theirs[3] = INF, INF, 0.0, 0.0  # left out: a failure of either, a clean error
    mine[4] = theirs[4]  # a tie: neither smaller nor larger
    kept = np.arange(4, 12)
    log_ratio = np.log(mine.numpy()[kept] / theirs.numpy()[kept])
    half = 1.96 * np.std(log_ratio, ddof=1) / math.sqrt(len(kept))
    result = metrics.paired_ratio(mine, theirs)
    assert result is not None and result["pairs"] == len(kept)
    assert result["geometric_mean_ratio"] == pytest.approx(math.exp(np.mean(log_ratio)), rel=1e-12)
    assert result["ci95_low"] == pytest.approx(math.exp(np.mean(log_ratio) - half), rel=1e-12)
    assert result["ci95_high"] == pytest.approx(math.exp(np.mean(log_ratio) + half), rel=1e-12)
    assert result["smaller"] == pytest.approx(np.mean(log_ratio < 0))
    assert result["larger"] == pytest.approx(np.mean(log_ratio > 0))
    assert metrics.paired_ratio(mine[3:6], theirs[3:6]) is not None  # two pairs suffice
    assert metrics.paired_ratio(mine[:5], theirs[:5]) is None  # one pair only


def test_a_paired_ratio_is_shown_as_its_mean_and_interval() -> None:
    ratio = {"pairs": 9, "geometric_mean_ratio": 1.00321, "ci95_low": 0.99987, "ci95_high": 1.006549,
             "smaller": 0.4, "larger": 0.6}
    assert metrics.format_ratio(ratio) == "1.0032 [0.9999, 1.0065]"
    assert metrics.format_ratio(None) == "–" and metrics.format_ratio(None, missing="") == ""


def test_reference_is_the_smallest_distance_per_sample() -> None:
    found = [torch.tensor(row, dtype=torch.float64) for row in ([1.0, INF, 0.5], [2.0, 0.3, INF], [0.5, 0.4, INF])]
    assert torch.equal(metrics.reference_distances(found), torch.tensor([0.5, 0.3, 0.5], dtype=torch.float64))


def test_local_optimality_is_nan_for_a_reference_without_spread() -> None:
    # Every reference distance equal to ε₀ = 0.5: AUREC_ref = 1 · 0.5 = acc · ε₀, a zero denominator.
    reference = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    assert math.isnan(metrics.local_optimality(reference, reference, clean_accuracy=1.0))
