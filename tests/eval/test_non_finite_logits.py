"""NaN/inf logits are no prediction: on the clean inputs they are an error (not "misclassified at distance 0"),
at a returned example they verify nothing (the argmax of a NaN row is 0, adversarial for any other label)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from edgewise.attacks import ddn
from edgewise.eval import run_attack, verify
from edgewise.validation import check_logits


class NaNRows(nn.Module):
    """``model``'s logits, NaN for the batch rows ``rows``."""

    def __init__(self, model: nn.Module, rows: list[int]) -> None:
        super().__init__()
        self.model, self.rows = model, rows

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        chosen = torch.zeros(len(inputs), dtype=torch.bool)
        chosen[[r for r in self.rows if r < len(inputs)]] = True
        return torch.where(chosen.unsqueeze(1), float("nan"), logits)


class NaNAbove(nn.Module):
    """``model``'s logits, NaN where the first pixel exceeds 0.99 (a point no clean oracle input reaches)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        return torch.where((inputs.flatten(1)[:, :1] > 0.99), float("nan"), logits)


def test_check_logits_refuses_non_finite_rows() -> None:
    labels = torch.zeros(7, dtype=torch.long)
    logits = torch.zeros(7, 3)
    logits[[0, 2, 3, 4, 5, 6], 1] = float("nan")
    logits[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^model must return finite logits, got NaN or inf for 6 of 7 inputs "
                                         r"\(batch rows 0, 2, 3, 4, 5, \.\.\.\)$"):
        check_logits(logits, labels)
    with pytest.raises(ValueError, match=r"\(dataset indices 10, 12, 13, 14, 15, \.\.\.\)$"):
        check_logits(logits, labels, indices=torch.arange(10, 17))
    assert check_logits(torch.zeros(7, 3), labels) == 3


def test_run_attack_refuses_nan_clean_logits(linear_oracle) -> None:
    o = linear_oracle
    model = NaNRows(o.model, [1, 6]).eval()
    attack = functools.partial(ddn, steps=2, levels=None)
    for checks in (True, False):  # the sanity checks see it first; without them, the batch does
        with pytest.raises(ValueError, match=r"^model must return finite logits, got NaN or inf for 2 of 8"):
            run_attack(model, o.inputs, o.labels, attack, progress=False, checks=checks)
    with pytest.raises(ValueError, match=r"for 2 of 8 inputs \(dataset indices 21, 26\)$"):
        run_attack(model, o.inputs, o.labels, attack, indices=torch.arange(20, 28), progress=False, checks=False)


def test_an_attack_refuses_nan_clean_logits(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"^model must return finite logits, got NaN or inf for 1 of 8 inputs"):
        ddn(NaNRows(o.model, [3]).eval(), o.inputs, o.labels, steps=2)


def test_a_returned_example_with_nan_logits_is_not_adversarial(linear_oracle) -> None:
    o = linear_oracle
    model = NaNAbove(o.model).eval()
    nan_point = o.inputs.clone()
    nan_point.view(len(nan_point), -1)[:, 0] = 1.0

    def to_nan_point(model, inputs, labels):
        return nan_point

    _, _, found = verify(model, o.inputs, o.labels, nan_point)
    assert not bool(found.any())
    result = run_attack(model, o.inputs, o.labels, to_nan_point, progress=False, checks=False)
    assert not bool(result.success.any()) and not bool(result.verified.any())
    assert torch.equal(result.adversarial, o.inputs)  # each sample falls back to its input
