"""The median distance counts failures as +inf (DDN sec. 4, ALMA Table 1), which the median of the finite values
does not: on these inputs the two differ, so a median that drops the failures fails here."""

import math

import torch

from edgewise.eval import run_attack
from edgewise.eval.metrics import median_distance


def test_failures_count_as_infinite_in_the_median() -> None:
    distances = torch.tensor([0.75, float("inf"), 0.25, float("inf"), 0.5])
    assert median_distance(distances) == 0.75          # of the finite values alone: 0.5
    assert median_distance(torch.tensor([0.25, float("inf"), float("inf")])) == math.inf  # finite alone: 0.25
    assert median_distance(torch.tensor([1.0, 0.25, 0.5])) == 0.5


def test_summary_median_counts_the_failed_samples(linear_oracle) -> None:
    o = linear_oracle
    wrong = o.labels.clone()
    wrong[:5] = 1 - wrong[:5]  # 5 clean errors at distance 0; the identity attack fails on the other 3

    def identity_attack(model, inputs, labels):
        return inputs.clone()

    summary = run_attack(o.model, o.inputs, wrong, identity_attack, progress=False).summary()
    assert summary["median_distance"] == 0.0
    wrong[:5] = o.labels[:5]
    wrong[:3] = 1 - o.labels[:3]  # now 3 at 0 and 5 failures: the median is +inf, the finite median 0
    summary = run_attack(o.model, o.inputs, wrong, identity_attack, progress=False).summary()
    assert summary["median_distance"] == math.inf
