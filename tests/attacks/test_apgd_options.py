"""APGD's cross-entropy loss in closed form, a single-sample ℓ1 batch, and the name in its `steps` error (beside
tests/attacks/test_apgd.py, which compares the attack with adv-lib's)."""

from __future__ import annotations

import math

import pytest
import torch

from edgewise.attacks import apgd
from edgewise.attacks.apgd import apgd_loss


def test_ce_loss_is_the_cross_entropy() -> None:
    # z = (0, ln 3), class 0: CE = log 4; targeted, its negation (APGD maximizes).
    logits, labels = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([0])
    assert float(apgd_loss(logits, labels, loss="ce", targeted=False)) == pytest.approx(math.log(4.0))
    assert float(apgd_loss(logits, labels, loss="ce", targeted=True)) == pytest.approx(-math.log(4.0))


def test_l1_runs_on_a_single_sample(linear_oracle) -> None:
    o = linear_oracle
    adv = apgd(o.model, o.inputs[:1], o.labels[:1], norm="l1", eps=1.0, steps=5)
    assert adv.shape == o.inputs[:1].shape


def test_steps_must_be_an_int(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(TypeError, match=r"^steps must be an int"):
        apgd(o.model, o.inputs, o.labels, steps=1.5)
