"""auto: within its budget for every sample (counted per sample by AttackBench's wrapper), never worse than its
first member run alone, near the closed-form optimum of the linear oracle, and the errors it raises."""

from __future__ import annotations

import pytest

from edgewise.attacks import auto, fmn
from edgewise.attacks.auto import plan
from edgewise.distances import lp
from edgewise.models import CountingModel
from edgewise.models.wrappers import BudgetModel

NORMS = ("linf", "l2", "l1")


def test_plan_fits_the_budget() -> None:
    for budget in (2, 3, 4, 9, 200, 1001):
        first, rounds, per_round = plan(budget)
        assert 2 * (first + rounds * per_round) <= budget
    assert plan(200) == (50, 5, 10)


@pytest.mark.parametrize("norm", NORMS)
def test_never_exceeds_the_budget_per_sample(linear_oracle, norm: str) -> None:
    o = linear_oracle
    # A clean error at the first sample: auto spends nothing more on it, the others run both members.
    inputs = o.inputs.clone()
    labels = o.labels.clone()
    labels[0] = 1 - labels[0]
    # AttackBench's wrapper as a per-sample counter (a budget it never reaches); it tells the sample a query
    # belongs to by the nearest input (ℓ2 here).
    counted = BudgetModel(o.model, inputs, labels, budget=10_000, distance="l2")
    auto(counted, inputs, labels, norm=norm, budget=60)
    assert int(counted.spent.max()) <= 60
    first, rounds, per_round = plan(60)
    assert int(counted.spent[0]) == 2 * first
    assert counted.spent[1:].tolist() == [2 * (first + rounds * per_round)] * (len(inputs) - 1)


def test_l0_budget(linear_oracle) -> None:
    # σ-zero's first Adam steps jump to corners of the box, nearer other inputs than their own, so AttackBench's
    # nearest-input matching cannot tell their sample: counted in total (every call is on the whole batch).
    o = linear_oracle
    counting = CountingModel(o.model)
    auto(counting, o.inputs, o.labels, norm="l0", budget=61)
    assert counting.forwards + counting.backwards == 60 * len(o.inputs)


@pytest.mark.parametrize("norm", NORMS)
def test_no_worse_than_its_first_member_and_near_the_optimum(linear_oracle, bend, norm: str) -> None:
    o = linear_oracle
    model = bend(o.model)
    adv = auto(model, o.inputs, o.labels, norm=norm, budget=200)
    alone = fmn(model, o.inputs, o.labels, norm=norm, steps=plan(200)[0])
    assert bool((model(adv).argmax(1) != o.labels).all())
    ours, first = getattr(lp, norm)(o.inputs, adv), getattr(lp, norm)(o.inputs, alone)
    assert bool((ours <= first).all())
    assert float((ours / getattr(o, norm)).max()) <= 1.01


def test_l0_is_sigma_zero_one_pixel(box_oracle) -> None:
    o = box_oracle
    adv = auto(o.model, o.inputs, o.labels, norm="l0", budget=600)
    assert lp.l0(o.inputs, adv).tolist() == [1.0] * len(o.inputs)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"norm": "l3", "budget": 10}, ValueError, r"norm must be one of \['l0', 'l1', 'l2', 'linf'\], got 'l3'"),
    ({"norm": "l2", "budget": 1}, ValueError, "budget must be >= 2"),
    ({"norm": "l2", "budget": 10.0}, TypeError, "budget must be an int"),
    ({"norm": "l2", "budget": 10, "steps": 3}, TypeError, "steps"),
])
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        auto(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, **kwargs)
