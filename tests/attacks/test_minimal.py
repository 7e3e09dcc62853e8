"""The minimal form of fixed-ε attacks: on the linear oracles the ε search converges to the closed-form minimal
distance (also with the box active), ``upper`` is only improved on, and the budget is rounds × steps."""

from __future__ import annotations

import functools

import pytest
import torch

from edgewise.attacks import ATTACKS, apgd, ddn, minimal, pgd
from edgewise.attacks.minimal import next_eps
from edgewise.distances import lp
from edgewise.models import CountingModel

# ℓ1-APGD needs about 1.1× the ℓ1 optimum of the linear oracle (see test_apgd.py).
WITHIN = {"linf": 1.01, "l2": 1.01, "l1": 1.15}


def test_next_eps_doubles_then_bisects() -> None:
    eps = torch.tensor([0.5, 0.5, 0.8])
    lower = torch.tensor([0.5, 0.0, 0.0])
    upper = torch.tensor([float("inf"), 0.4, float("inf")])
    torch.testing.assert_close(next_eps(eps, lower, upper, norm="linf"), torch.tensor([1.0, 0.2, 1.0]))
    torch.testing.assert_close(next_eps(eps, lower, upper, norm="l2"), torch.tensor([1.0, 0.2, 1.6]))


@pytest.mark.parametrize(("name", "norm"), [("apgd", "linf"), ("apgd", "l2"), ("apgd", "l1"), ("pgd", "linf"),
                                           ("pgd", "l2")])
def test_linear_oracle_converges_to_the_closed_form(oracle_factory, name: str, norm: str) -> None:
    o = oracle_factory(classes=3)
    attack = {"apgd": apgd, "pgd": pgd}[name]
    # From a first ε below every optimum: the doubling brackets it, the bisection narrows it to about 2^-9.
    adv = minimal(o.model, o.inputs, o.labels, attack=attack, norm=norm, eps=0.5 * float(getattr(o, norm).min()),
                  steps=10, binary_search_steps=12)
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    ratio = getattr(lp, norm)(o.inputs, adv) / getattr(o, norm)
    assert float(ratio.min()) >= 1 - 1e-3 and float(ratio.max()) <= WITHIN[norm], ratio


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_box_active_oracle(box_oracle, norm: str) -> None:
    o = box_oracle
    adv = ATTACKS["apgd_minimal"](o.model, o.inputs, o.labels, norm=norm, eps=0.05, steps=10, binary_search_steps=12)
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    ratio = getattr(lp, norm)(o.inputs, adv) / getattr(o, norm)
    assert float(ratio.min()) >= 1 - 1e-3 and float(ratio.max()) <= WITHIN[norm], ratio


def test_targeted(oracle_factory) -> None:
    o = oracle_factory(classes=4)
    targets = 1 - o.labels
    adv = ATTACKS["apgd_minimal"](o.model, o.inputs, targets, norm="l2", eps=0.05, steps=10,
                                  binary_search_steps=12, targeted=True)
    assert torch.equal(o.model(adv).argmax(1), targets)
    assert float((lp.l2(o.inputs, adv) / o.l2).max()) <= 1.01


def test_upper_is_only_improved_on(linear_oracle) -> None:
    o = linear_oracle
    # Above the optimum: every round bisects below it, and ends within 1% of the optimum.
    adv = minimal(o.model, o.inputs, o.labels, attack=pgd, norm="linf", upper=1.5 * o.linf, steps=10,
                  binary_search_steps=10)
    assert float((lp.linf(o.inputs, adv) / o.linf).max()) <= 1.01
    # Below the optimum nothing better exists: the original inputs come back.
    adv = minimal(o.model, o.inputs, o.labels, attack=pgd, norm="linf", upper=0.99 * o.linf, steps=10,
                  binary_search_steps=3)
    assert torch.equal(adv, o.inputs)


@pytest.mark.parametrize("name", ["apgd_minimal", "pgd_minimal"])
def test_budget_is_rounds_times_steps(linear_oracle, name: str) -> None:
    o = linear_oracle
    counting = CountingModel(o.model)
    seen: list[int] = []
    ATTACKS[name](counting, o.inputs, o.labels, norm="linf", steps=7, binary_search_steps=3,
                  callback=lambda step, state: seen.append(step))
    # One forward more without ``upper``: the clean check.
    assert counting.forwards == (3 * 7 + 1) * len(o.inputs) and counting.backwards == 3 * 7 * len(o.inputs)
    assert seen == [0, 1, 2]
    counting.forwards = counting.backwards = 0
    ATTACKS[name](counting, o.inputs, o.labels, norm="linf", steps=7, binary_search_steps=3, upper=2 * o.linf)
    assert counting.forwards == 3 * 7 * len(o.inputs) and counting.backwards == 3 * 7 * len(o.inputs)


@pytest.mark.parametrize("name", ["apgd_minimal", "pgd_minimal"])
@pytest.mark.parametrize("targeted", [False, True])
def test_an_input_already_adversarial_is_at_distance_zero(oracle_factory, name: str, targeted: bool) -> None:
    o = oracle_factory(classes=4)
    predicted = o.model(o.inputs).argmax(1)
    # Half the samples are already adversarial: labelled with another class (untargeted) or their own prediction
    # as the target (targeted); the attack would move them to a higher-loss point and the search end near 0.
    other = 1 - predicted  # the oracle separates classes 0 and 1; 2 and 3 are never reachable
    already = torch.arange(len(o.inputs)) % 2 == 0
    labels = torch.where(already, predicted if targeted else other, other if targeted else predicted)
    adv = ATTACKS[name](o.model, o.inputs, labels, norm="l2", steps=10, binary_search_steps=8, targeted=targeted)
    assert torch.equal(adv[already], o.inputs[already])
    assert bool((lp.l2(o.inputs, adv)[~already] > 0).all())


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"attack": 3}, TypeError, "attack must be a fixed-eps attack function, got int"),
    ({"attack": ddn}, TypeError, r"attack must take the keywords eps and norm \(a fixed-eps attack such as pgd or "
                                 r"apgd\), got ddn"),
    ({"norm": "l0"}, ValueError, r"norm must be one of \['l1', 'l2', 'linf'\], got 'l0'"),
    ({"binary_search_steps": 0}, ValueError, "binary_search_steps must be > 0"),
    ({"upper": torch.ones(3)}, ValueError, r"upper must be None or a \(B,\) = \(8,\) floating-point tensor"),
    ({"eps": 0.0}, ValueError, "eps must be > 0"),
])
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    o = linear_oracle
    kwargs = {"attack": functools.partial(apgd, loss="ce"), **kwargs}
    with pytest.raises(error, match=match):
        minimal(o.model, o.inputs, o.labels, **kwargs)
