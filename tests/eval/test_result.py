"""AttackResult.summary against numbers counted by hand on a result of five samples."""

from __future__ import annotations

import math

import pytest
import torch

from edgewise.eval import AttackResult


def _result() -> AttackResult:
    # Samples 0-2 correctly classified (0 and 1 broken at 0.5 and 1.5, 2 not broken: inf, its returned point
    # failed verification and was non-finite), 3-4 clean errors (distance 0, counted as successes).
    def flags(*values: int) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.bool)

    return AttackResult(
        adversarial=torch.zeros(5, 1, 2, 2), labels=torch.tensor([0, 1, 2, 0, 1]),
        clean_prediction=torch.tensor([0, 1, 2, 1, 0]), adversarial_prediction=torch.tensor([1, 0, 2, 1, 0]),
        clean_correct=flags(1, 1, 1, 0, 0), success=flags(1, 1, 0, 1, 1), verified=flags(1, 1, 0, 1, 1),
        distances={"l2": torch.tensor([0.5, 1.5, math.inf, 0.0, 0.0]), "l1": torch.tensor([1.0, 3.0, math.inf, 0, 0])},
        forwards=torch.tensor([10, 20, 30, 0, 0]), backwards=torch.tensor([5, 10, 15, 0, 0]),
        first_adversarial=torch.tensor([3, 7, 0, 0, 0]), seconds=torch.tensor([0.25, 0.25, 0.5, 0.0, 0.0]),
        non_finite=flags(0, 0, 1, 0, 0), stalled=flags(0, 1, 0, 0, 0), indices=torch.arange(5))


def test_summary_counts_what_the_tables_report() -> None:
    summary = _result().summary(distance="l2", eps=(0.75, 2.0))
    assert summary == {
        "n": 5, "clean_accuracy": pytest.approx(0.6), "success_rate": pytest.approx(0.8),
        "success_rate_on_correct": pytest.approx(2 / 3), "distance": "l2",
        "median_distance": 0.5,  # of 0, 0, 0.5, 1.5, inf
        "median_distance_on_correct": 1.5,  # of 0.5, 1.5, inf
        "mean_distance": pytest.approx(0.5),  # of the successes 0.5, 1.5, 0, 0
        "robust_accuracy": {"0.75": pytest.approx(0.4), "2.0": pytest.approx(0.2)},  # 1.5 and inf; inf
        "forwards_per_sample": pytest.approx(12.0), "backwards_per_sample": pytest.approx(6.0),
        "failed_verification": 1, "no_adversarial": 1, "non_finite": 1, "stalled": 1, "seconds": pytest.approx(1.0),
    }
    assert _result().summary(distance="l1")["median_distance_on_correct"] == 3.0


def test_summary_without_correctly_classified_samples_has_no_figures_on_them() -> None:
    result = _result()
    errors = result.take(torch.tensor([3, 4]))
    summary = errors.summary()
    assert summary["success_rate_on_correct"] is None and summary["median_distance_on_correct"] is None
    assert summary["n"] == 2 and summary["median_distance"] == 0.0
