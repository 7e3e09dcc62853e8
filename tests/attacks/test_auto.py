"""auto: within its budget for every sample (counted per sample by AttackBench's wrapper), never worse than its
first member run alone with the same steps, near the closed-form optimum of the linear oracle (untargeted and
targeted), the registry's steps vocabulary, and the errors it raises."""

from __future__ import annotations

import functools

import pytest
import torch

from edgewise.attacks import ATTACKS, alma, auto, ddn, fmn, sigma_zero
from edgewise.attacks.auto import (
    MASKED_PLANS,
    PLANS,
    SEARCH_ROUNDS,
    _probe,
    line_search,
    local_search,
    portfolio,
    prune,
    saturated,
    stage_steps,
    swap_search,
)
from edgewise.attacks.fab import fab_steps
from edgewise.cli.attack import bind_attack
from edgewise.distances import lp
from edgewise.models import CountingModel
from edgewise.models.architectures import Quantize
from edgewise.models.wrappers import BudgetModel

from ..conftest import make_linear_oracle  # type: ignore[import-not-found]

NORMS = ("linf", "l2", "l1")
ALONE = {"fmn": fmn, "ddn": ddn, "alma": alma, "sigma_zero": sigma_zero,
         "fab_t": functools.partial(fab_steps, target_classes=9)}


def first_member_alone(norm: str, steps: int):
    name = PLANS[norm][0][0]
    options = {"distance": norm} if name == "alma" else {} if name == "ddn" else {"norm": norm}
    return functools.partial(ALONE[name], steps=steps, **options)


def test_stage_steps_sum_to_the_steps() -> None:
    for stages in (*PLANS.values(), (("ddn", 0.3), ("fmn", 0.3), ("apgd", 1.0))):
        for steps in (0, 1, 7, 499):
            counts = stage_steps(stages, steps)
            assert sum(counts) == steps and all(c >= 0 for c in counts)
    assert stage_steps((("ddn", 0.3), ("apgd", 0.7)), 499) == [149, 350]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("budget", [60, 61])
def test_never_exceeds_the_budget_per_sample(oracle_factory, norm: str, budget: int) -> None:
    o = oracle_factory(classes=3)
    # A clean error at the first sample: auto spends the probe's forward and backward on it, the others run every
    # stage.
    inputs, labels = o.inputs.clone(), o.labels.clone()
    labels[0] = 1 - labels[0]
    # AttackBench's wrapper as a per-sample counter (a budget it never reaches); it tells the sample a query
    # belongs to by the nearest input (ℓ2 here).
    counted = BudgetModel(o.model, inputs, labels, budget=10_000, distance="l2")
    auto(counted, inputs, labels, norm=norm, budget=budget)
    assert int(counted.spent[0]) == 2
    # Every pass used, but for the remainder of APGD's steps over its rounds (at most rounds - 1 steps).
    assert all(budget - 2 * SEARCH_ROUNDS <= spent <= budget for spent in counted.spent[1:].tolist())


def test_l0_budget(linear_oracle) -> None:
    # σ-zero's first Adam steps jump to corners of the box, nearer other inputs than their own, so AttackBench's
    # nearest-input matching cannot tell their sample: counted in total (every call is on the whole batch).
    o = linear_oracle
    counting = CountingModel(o.model)
    auto(counting, o.inputs, o.labels, norm="l0", budget=61)
    # σ-zero's 27 steps in full, then pruning's passes (at most its 3 steps' 6).
    assert 1 + 2 * 27 <= (counting.forwards + counting.backwards) / len(o.inputs) <= 61


@pytest.mark.parametrize("norm", NORMS)
def test_no_worse_than_its_first_member_and_near_the_optimum(oracle_factory, bend, norm: str) -> None:
    o = oracle_factory(classes=3)
    model = bend(o.model)
    adv = auto(model, o.inputs, o.labels, norm=norm, budget=202)  # the probe's two passes, then 100 steps
    alone = first_member_alone(norm, stage_steps(PLANS[norm], 100)[0])(model, o.inputs, o.labels)
    assert bool((model(adv).argmax(1) != o.labels).all())
    ours, first = getattr(lp, norm)(o.inputs, adv), getattr(lp, norm)(o.inputs, alone)
    assert bool((ours <= first).all())
    assert float((ours / getattr(o, norm)).max()) <= 1.01


@pytest.mark.parametrize("norm", NORMS)
def test_targeted_reaches_the_target_near_the_optimum(oracle_factory, bend, norm: str) -> None:
    # Classes 2 and 3 never win, so the minimal perturbation to the other of the first two classes is the
    # untargeted one.
    o = oracle_factory(classes=4)
    model = bend(o.model)
    targets = 1 - o.labels
    adv = auto(model, o.inputs, targets, norm=norm, budget=201, targeted=True)
    assert torch.equal(model(adv).argmax(1), targets)
    assert float((getattr(lp, norm)(o.inputs, adv) / getattr(o, norm)).max()) <= 1.01


def test_alma_gives_its_steps_to_the_next_stage_on_two_classes(linear_oracle) -> None:
    o = linear_oracle  # two classes: no DLR⁺
    counted = BudgetModel(o.model, o.inputs, o.labels, budget=10_000, distance="l2")
    adv = portfolio(counted, o.inputs, o.labels, stages=(("alma", 0.5), ("fmn", 0.5)), norm="l1", budget=41)
    assert counted.spent.tolist() == [41] * len(o.inputs)
    torch.testing.assert_close(adv, fmn(o.model, o.inputs, o.labels, norm="l1", steps=20))


def test_line_search_reaches_the_boundary_on_the_segment(linear_oracle) -> None:
    o = linear_oracle
    # Three times past the ℓ2 optimum along −sign(f)·w: the boundary is at a third of the segment.
    w = o.model[1].weight[1].detach().view(o.inputs.shape[1:])
    far = o.inputs - 3 * ((2 * o.labels - 1).float() * o.l2).view(-1, 1, 1, 1) * w
    counting = CountingModel(o.model)
    near = line_search(counting, o.inputs, o.labels, far, passes=20, targeted=False)
    assert counting.forwards == 20 * len(o.inputs) and counting.backwards == 0
    assert bool((o.model(near).argmax(1) != o.labels).all())
    torch.testing.assert_close(lp.l2(o.inputs, near), o.l2, rtol=1e-4, atol=0)


def test_prune_leaves_only_needed_elements_within_its_passes(linear_oracle) -> None:
    o = linear_oracle
    # An adversarial start with every element changed: the linear oracle's ℓ∞-optimal point, pushed 50% past
    # the boundary.
    w = o.model[1].weight[1].detach()
    start = (o.inputs - 1.5 * (2 * o.labels - 1).float().view(-1, 1, 1, 1) * o.linf.view(-1, 1, 1, 1)
             * w.sign().view(o.inputs.shape[1:])).clamp(0, 1)
    assert bool((o.model(start).argmax(1) != o.labels).all())
    counting = CountingModel(o.model)
    pruned = prune(counting, o.inputs, o.labels, start, passes=2 + 64, targeted=False)
    assert counting.forwards + counting.backwards <= 66 * len(o.inputs)
    assert bool((o.model(pruned).argmax(1) != o.labels).all())
    kept = lp.l0(o.inputs, pruned)
    assert bool((kept < 64).all())
    for i in range(len(o.inputs)):  # undoing any one kept element breaks the adversarial: nothing left to prune
        for j in (pruned[i] != o.inputs[i]).flatten().nonzero().squeeze(1):
            trial = pruned[i].flatten().clone()
            trial[j] = o.inputs[i].flatten()[j]
            assert int(o.model(trial.view(1, *o.inputs.shape[1:])).argmax(1)) == int(o.labels[i])
    few = prune(o.model, o.inputs, o.labels, start, passes=2 + 3, targeted=False)
    assert bool((lp.l0(o.inputs, few) >= 61).all())  # three forwards undo at most three elements


def test_a_stage_passes_its_options_to_its_member(linear_oracle, bend) -> None:
    o = linear_oracle
    model = bend(o.model)
    adv = portfolio(model, o.inputs, o.labels, stages=(("fmn", 1.0, {"gamma": 0.2}),), norm="l2", budget=21)
    torch.testing.assert_close(adv, fmn(model, o.inputs, o.labels, norm="l2", steps=10, gamma=0.2))
    assert not torch.equal(adv, fmn(model, o.inputs, o.labels, norm="l2", steps=10))


@pytest.mark.parametrize(("member", "norm", "options"), [
    *(("fmn_best", norm, {"gamma": 0.2}) for norm in ("l1", "l2", "linf")),
    ("sigma_zero_best", "l0", {"threshold": 0.5}),
])
def test_a_restarted_member_is_its_attack_from_the_best_point_of_the_stages_before(
        linear_oracle, bend, member: str, norm: str, options: dict[str, float]) -> None:
    o = linear_oracle
    model = bend(o.model)
    attack = fmn if member == "fmn_best" else sigma_zero
    chosen = {"norm": norm}
    first = attack(model, o.inputs, o.labels, steps=5, **chosen)
    adv = portfolio(model, o.inputs, o.labels, stages=((attack.__name__, 0.25), (member, 0.75, options)),
                    norm=norm, budget=41)
    expected = attack(model, o.inputs, o.labels, steps=15, starting_points=first, **chosen, **options)
    size = getattr(lp, norm)
    kept = size(o.inputs, expected) >= size(o.inputs, first)  # where it found nothing smaller: the first point
    torch.testing.assert_close(adv, torch.where(kept.view(-1, 1, 1, 1), first, expected))
    assert bool((size(o.inputs, expected) < size(o.inputs, first)).any())


def test_l0_is_sigma_zero_one_pixel(box_oracle) -> None:
    o = box_oracle
    adv = auto(o.model, o.inputs, o.labels, norm="l0", budget=601)
    assert lp.l0(o.inputs, adv).tolist() == [1.0] * len(o.inputs)


def test_registry_entry_spends_two_passes_per_step(oracle_factory) -> None:
    o = oracle_factory(classes=3)
    counted = BudgetModel(o.model, o.inputs, o.labels, budget=10_000, distance="l2")
    attack = bind_attack("auto", steps=15, distance="l1", options={})
    adv = attack(counted, o.inputs, o.labels)
    assert int(counted.spent.max()) <= 30
    torch.testing.assert_close(adv, auto(o.model, o.inputs, o.labels, norm="l1", budget=30))
    # By default ℓ2 and 500 steps, a budget of 1,000 passes (AttackBench's Q of the docs).
    counted = BudgetModel(o.model, o.inputs, o.labels, budget=10_000, distance="l2")
    default = ATTACKS["auto"](counted, o.inputs, o.labels, generator=torch.Generator().manual_seed(0))
    assert 1000 - 2 * SEARCH_ROUNDS <= int(counted.spent.max()) <= 1000
    torch.testing.assert_close(default, auto(o.model, o.inputs, o.labels, norm="l2", budget=1000,
                                             generator=torch.Generator().manual_seed(0)), rtol=0, atol=0)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"norm": "l3", "budget": 10}, ValueError, r"norm must be one of \['l0', 'l1', 'l2', 'linf'\], got 'l3'"),
    ({"norm": "l2", "budget": 0}, ValueError, "budget must be"),
    ({"norm": "l2", "budget": 10.0}, TypeError, "budget must be an int"),
    ({"norm": "l2", "budget": 10, "steps": 3}, TypeError, "steps"),
])
def test_bad_options(linear_oracle, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        auto(linear_oracle.model, linear_oracle.inputs, linear_oracle.labels, **kwargs)


@pytest.mark.parametrize(("stages", "match"), [
    ((), "at least one"),
    ((("pgd", 0.5),), "member one of"),
    ((("fmn", 0.0),), r"share in \(0, 1\]"),
    ((("ddn", 1.0),), "does not minimize norm 'l1'"),
    ((("fmn", 0.7), ("alma", 0.7), ("apgd", 1.0)), "sum to at most 1"),
    ((("apgd", 1.0, {"loss": 1.0}),), "options a mapping for the members"),
])
def test_bad_stages(linear_oracle, stages, match) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=match):
        portfolio(o.model, o.inputs, o.labels, stages=stages, norm="l1", budget=10)


def test_the_smallest_budget_finds_the_clean_errors_only(linear_oracle) -> None:
    o = linear_oracle
    labels = o.labels.clone()
    labels[0] = 1 - labels[0]
    counting = CountingModel(o.model)
    adv = auto(counting, o.inputs, labels, norm="l2", budget=2)
    assert torch.equal(adv, o.inputs) and counting.forwards == len(o.inputs) and counting.backwards == 0


class _DeadBelow(torch.nn.Module):
    """Two classes, z = (0, 10 relu(x₀ − 0.6) − 0.1): at x₀ = 0.5 every gradient is exactly 0, so FMN and DDN
    step in the random direction their generator draws, and the points found depend on it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        return torch.stack([torch.zeros_like(x[:, 0]), 10 * torch.relu(x[:, 0] - 0.6) - 0.1], 1)


@pytest.mark.parametrize("norm", NORMS)
def test_registry_entry_passes_its_generator_to_the_members(norm: str) -> None:
    inputs, labels = torch.full((4, 6), 0.5), torch.zeros(4, dtype=torch.long)

    def seeded(seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    model = _DeadBelow().eval()
    found = ATTACKS["auto"](model, inputs, labels, norm=norm, steps=30, generator=seeded(1))
    torch.testing.assert_close(found, auto(model, inputs, labels, norm=norm, budget=60, generator=seeded(1)),
                               rtol=0, atol=0)
    other = auto(model, inputs, labels, norm=norm, budget=60, generator=seeded(2))
    assert not torch.equal(found, other)  # the generator matters here


def test_registry_entry_names_steps_in_its_error(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match=r"^steps must be > 0"):
        ATTACKS["auto"](o.model, o.inputs, o.labels, steps=0)


def test_prune_tries_only_the_changed_elements(linear_oracle) -> None:
    # Eight elements changed, the eight of largest |w| pushed to the box's far side: one of them alone crosses
    # the boundary (the margins are below max |w| / 10). With 2 + 8 passes every changed element gets its trial,
    # so what is left is needed; trials spent on unchanged elements would leave unneeded changes.
    o = linear_oracle
    w = o.model[1].weight[1].detach()
    direction = (1 - 2 * o.labels).float().view(-1, 1) * w.sign()  # towards the other class
    largest = w.abs().topk(8).indices
    start = o.inputs.flatten(1).clone()
    start[:, largest] = torch.where(direction[:, largest] > 0, 1.0, 0.0)
    start = start.view_as(o.inputs)
    assert bool((o.model(start).argmax(1) != o.labels).all())
    pruned = prune(o.model, o.inputs, o.labels, start, passes=2 + 8, targeted=False)
    assert bool((o.model(pruned).argmax(1) != o.labels).all())
    for i in range(len(o.inputs)):  # undoing any one kept element breaks the adversarial
        for j in (pruned[i] != o.inputs[i]).flatten().nonzero().squeeze(1):
            trial = pruned[i].flatten().clone()
            trial[j] = o.inputs[i].flatten()[j]
            assert int(o.model(trial.view(1, *o.inputs.shape[1:])).argmax(1)) == int(o.labels[i])


def _sparse_case() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two classes, z₁ − z₀ = v·x + b, every input of class 0 by a margin that several saturated elements need
    to cross: the model, inputs, labels, each element's contribution cᵢ = |vᵢ| × (its room towards class 1) and
    the closed-form ℓ0 minimum, the fewest elements whose largest contributions sum past the margin."""
    generator = torch.Generator().manual_seed(5)
    v = torch.randn(64, generator=generator, dtype=torch.float64)
    inputs = torch.rand(6, 64, generator=generator, dtype=torch.float64)
    bias = -float((inputs @ v).max()) - 3.0
    layer = torch.nn.Linear(64, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.zeros(64, dtype=torch.float64), v]))
        layer.bias.copy_(torch.tensor([0.0, bias], dtype=torch.float64))
    model = torch.nn.Sequential(torch.nn.Flatten(), layer).eval()
    labels = torch.zeros(6, dtype=torch.long)
    contribution = v.abs() * torch.where(v > 0, 1 - inputs, inputs)
    margin = -(inputs @ v + bias)
    cumulative = contribution.sort(1, descending=True).values.cumsum(1)
    minimum = (cumulative <= margin.unsqueeze(1)).sum(1) + 1
    return model, inputs.view(6, 1, 8, 8), labels, contribution, minimum.double()


def _far_side(inputs: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Every element at the end of the box towards class 1."""
    v = model[1].weight[1].detach()
    return torch.where(v > 0, 1.0, 0.0).double().expand(len(inputs), -1).reshape(inputs.shape)


def test_saturated_moves_each_changed_element_to_the_box_end_it_points_to() -> None:
    inputs = torch.tensor([[0.2, 0.5, 0.7, 0.4]])
    points = torch.tensor([[0.3, 0.5, 0.1, 0.4001]])
    assert saturated(inputs, points).tolist() == [[1.0, 0.5, 0.0, 1.0]]


def test_prune_from_a_point_short_of_the_box_ends_reaches_the_l0_minimum_of_a_linear_model() -> None:
    # Each element 90% of the way to its box end: undoing alone would keep more elements than needed where the
    # 90% contributions need one more to cross the margin; saturating first, then undoing the smallest
    # contributions, leaves the largest ones: the closed-form minimum.
    model, inputs, labels, contribution, minimum = _sparse_case()
    start = inputs + 0.9 * (_far_side(inputs, model) - inputs)
    assert bool((model(start).argmax(1) != labels).all())
    margin = -model(inputs).diff(dim=1).squeeze(1).detach()
    short = ((0.9 * contribution).sort(1, descending=True).values.cumsum(1) <= margin.unsqueeze(1)).sum(1) + 1
    assert bool((short > minimum).any()) and bool((minimum >= 3).all())
    counting = CountingModel(model)
    pruned = prune(counting, inputs, labels, start, passes=2 + 64, targeted=False)
    assert counting.forwards + counting.backwards <= 66 * len(inputs)
    assert bool((model(pruned).argmax(1) != labels).all())
    torch.testing.assert_close(lp.l0(inputs, pruned), minimum)


def test_swap_search_trades_small_changes_for_large_ones_down_to_the_l0_minimum() -> None:
    # Start: the smallest contributions, saturated, as many as cross the margin: prune, which only undoes, stays
    # above the minimum; swaps (two small out, one large in) reach it.
    model, inputs, labels, contribution, minimum = _sparse_case()
    margin = -model(inputs).diff(dim=1).squeeze(1).detach()
    ascending = contribution.argsort(1)
    count = (contribution.gather(1, ascending).cumsum(1) <= margin.unsqueeze(1)).sum(1) + 1
    chosen = torch.arange(64).expand(6, -1) < count.unsqueeze(1)
    mask = torch.zeros_like(chosen).scatter(1, ascending, chosen)
    start = torch.where(mask, _far_side(inputs, model).flatten(1), inputs.flatten(1)).view_as(inputs)
    assert bool((model(start).argmax(1) != labels).all()) and bool((count > minimum + 2).all())
    assert bool((lp.l0(inputs, prune(model, inputs, labels, start, passes=66, targeted=False)) > minimum).all())
    counting = CountingModel(model)
    passes = 4 * 60 + 3
    swapped = swap_search(counting, inputs, labels, start, passes=passes, targeted=False)
    assert counting.forwards + counting.backwards <= passes * len(inputs)
    assert bool((model(swapped).argmax(1) != labels).all())
    torch.testing.assert_close(lp.l0(inputs, swapped), minimum)


def _three_classes(generator: torch.Generator) -> tuple[torch.nn.Module, torch.Tensor]:
    # z = (0, 10 w·x − 2, 20 w·x − 6): class 0 below w·x = 0.2, class 1 up to 0.4, class 2 beyond.
    w = torch.randn(16, generator=generator)
    w = w / w.norm()
    layer = torch.nn.Linear(16, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.zeros(16), 10 * w, 20 * w]))
        layer.bias.copy_(torch.tensor([0.0, -2.0, -6.0]))
    return torch.nn.Sequential(torch.nn.Flatten(), layer).eval(), w


@pytest.mark.parametrize("norm", NORMS)
def test_targeted_search_stage_reaches_the_target_where_another_class_is_nearer(norm: str) -> None:
    # Three classes, z = (0, 10 w·x − 2, 20 w·x − 6): from w·x = 0.05 (class 0), class 1 wins beyond w·x = 0.2,
    # the target 2 only beyond 0.4. An untargeted search would stop at the nearer boundary.
    generator = torch.Generator().manual_seed(0)
    model, w = _three_classes(generator)
    inputs = (0.5 + 0.05 * torch.randn(6, 16, generator=generator)).clamp(0, 1)
    inputs = inputs - (inputs @ w).unsqueeze(1) * w + 0.05 * w  # w·x = 0.05: class 0
    labels = model(inputs).argmax(1)
    assert bool((labels == 0).all())
    targets = torch.full((6,), 2)
    adv = portfolio(model, inputs, targets, stages=(("apgd", 1.0),), norm=norm, budget=201, targeted=True)
    assert torch.equal(model(adv).argmax(1), targets)


def test_a_stage_that_fails_on_a_sample_keeps_its_earlier_point(linear_oracle) -> None:
    # The second stage, DDN starting from a small norm, reaches the boundary of the nearer half of the samples
    # only and returns the others unchanged (its failure); those keep the first stage's point.
    o = linear_oracle
    small = {"init_norm": float(o.l2.median()) / 1.5, "gamma": 0.05}
    second = ddn(o.model, o.inputs, o.labels, steps=10, **small)
    failed = (second == o.inputs).flatten(1).all(1)
    assert 0 < int(failed.sum()) < len(o.inputs)
    adv = portfolio(o.model, o.inputs, o.labels, stages=(("ddn", 0.5), ("ddn", 0.5, small)), norm="l2", budget=41)
    assert bool((o.model(adv).argmax(1) != o.labels).all())


class _Step(torch.nn.Module):
    """Two classes, class 1 iff x₀ > 0.61: a step function of the input, differentiable with a gradient exactly 0
    everywhere, as an input quantization by torch.round is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        step = torch.round(x[:, 0] - 0.11)  # 1 iff x₀ > 0.61 on [0, 1]
        return torch.stack([torch.zeros_like(step), 2 * step - 1], 1)


def test_local_search_undoes_what_the_decision_does_not_need() -> None:
    inputs, labels = torch.full((3, 8), 0.5), torch.zeros(3, dtype=torch.long)
    far = torch.full_like(inputs, 0.9)  # adversarial: x₀ = 0.9 > 0.61, and seven needless changes
    counting = CountingModel(_Step().eval())
    generator = torch.Generator().manual_seed(0)
    found = {norm: local_search(counting, inputs, labels, far, passes=300, norm=norm, targeted=False,
                                generator=generator) for norm in ("l1", "l2", "linf")}
    assert counting.backwards == 0 and counting.forwards == 3 * 300 * 3  # one forward per proposal
    for norm, point in found.items():
        assert bool((_Step().eval()(point).argmax(1) == 1).all()), norm  # still adversarial
        assert bool(((point >= 0) & (point <= 1)).all()), norm
    # ℓ1 zeroes blocks: x₀ must stay at 0.9 (zeroing it breaks the decision), every other element is undone.
    torch.testing.assert_close(found["l1"][:, 0], far[:, 0])
    assert torch.equal(found["l1"][:, 1:], inputs[:, 1:])
    # ℓ2 halves blocks: x₀'s change halves once (0.4 -> 0.2; 0.1 would cross back), the others vanish.
    torch.testing.assert_close(found["l2"][:, 0], torch.full((3,), 0.7))
    assert float((found["l2"][:, 1:] - inputs[:, 1:]).abs().max()) < 1e-3
    # ℓ∞ clips to (1 − η) ‖δ‖∞: down to the step, 0.11 from x₀, within the smallest η.
    sizes = lp.linf(inputs, found["linf"])
    assert bool(((sizes > 0.11) & (sizes < 0.11 * 1.01)).all())


@pytest.mark.parametrize("norm", NORMS)
def test_blind_samples_get_the_masked_plan_and_the_others_the_usual_one(linear_oracle, norm: str) -> None:
    # With the probe, Q = 400 leaves (400 - 2) // 2 = 199 steps, as Q = 399 does without it.
    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    inputs, labels = torch.full((4, 8), 0.5), torch.zeros(4, dtype=torch.long)
    blind = auto(_Step().eval(), inputs, labels, norm=norm, budget=400, generator=seeded())
    torch.testing.assert_close(blind, portfolio(_Step().eval(), inputs, labels, stages=MASKED_PLANS[norm], norm=norm,
                                                budget=399, generator=seeded()), rtol=0, atol=0)
    # Where the random search found a point (x₀ > 0.61 by chance), it is shrunk towards the step, 0.11 along x₀
    # (a random point of the search alone is about as far in every element).
    found = _Step().eval()(blind).argmax(1) == 1
    assert int(found.sum()) >= 2
    moved = (blind[found] - inputs[found]).abs()
    assert float(moved[:, 1:].max()) < 0.05 and bool(((moved[:, 0] > 0.11) & (moved[:, 0] < 0.5)).all())
    o = linear_oracle
    seeing = auto(o.model, o.inputs, o.labels, norm=norm, budget=400, generator=seeded())
    torch.testing.assert_close(seeing, portfolio(o.model, o.inputs, o.labels, stages=PLANS[norm], norm=norm,
                                                 budget=399, generator=seeded()), rtol=0, atol=0)


@pytest.mark.parametrize("norm", NORMS)
def test_a_module_that_blocks_the_gradient_is_passed_straight_through(oracle_factory, norm: str) -> None:
    # The linear oracle behind a fine input quantization: every gradient at the inputs is exactly zero, but the
    # quantization's straight-through gradient is the oracle's, so auto gets within a few rounding steps of the
    # closed-form optimum (the decision-based search alone stays far above it).
    o = oracle_factory(classes=3)
    model = torch.nn.Sequential(Quantize(1e-5), o.model).eval()
    adv = auto(model, o.inputs, o.labels, norm=norm, budget=402)
    assert bool((model(adv).argmax(1) != o.labels).all())
    ratio = getattr(lp, norm)(o.inputs, adv) / getattr(o, norm)
    assert float(ratio.max()) <= 1.02 and float(ratio.min()) >= 0.98


def test_a_targeted_local_search_keeps_every_point_in_the_target_class() -> None:
    # From points deep in the target class 2 (w·x = 0.6), shrinking towards the inputs (class 0) crosses class 1
    # first: a proposal there is not adversarial for the target and must be refused.
    model, w = _three_classes(torch.Generator().manual_seed(0))
    inputs = torch.full((6, 16), 0.5)
    inputs = inputs - (inputs @ w).unsqueeze(1) * w + 0.05 * w
    far = (inputs + 0.55 * w).clamp(0, 1)
    targets = torch.full((6,), 2)
    assert torch.equal(model(far).argmax(1), targets)
    found = local_search(model, inputs, targets, far, passes=60, norm="l2", targeted=True,
                         generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(found).argmax(1), targets)
    assert bool((lp.l2(inputs, found) < lp.l2(inputs, far)).all())  # and it did shrink them


class _Times(torch.nn.Module):
    """A module of the input's shape whose gradient is not the identity's, and never zero."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return 2 * inputs


class _Shift(torch.nn.Module):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs - 0.7


def test_the_probe_names_only_the_modules_that_block_the_gradient() -> None:
    # The _Probe's rule: a module blocks a sample's gradient where its output gradient is non-zero, its input
    # gradient exactly zero and its output not all zero. Behind a quantization every input gradient is zero:
    # the quantization blocks it, the scaling after it does not (its input gradient is not zero).
    o = make_linear_oracle(batch=4, classes=3)
    quantize = Quantize(1e-5)
    model = torch.nn.Sequential(quantize, _Times(), o.model).eval()
    _, blind, blockers = _probe(model, o.inputs, o.labels, targeted=False, gradient=True)
    assert bool(blind.all()) and blockers == [quantize]
    # A ReLU that no input of a sample activates (output all zero) blinds that sample without blocking: there is
    # nothing to pass straight through, even where another sample's ReLU is active.
    layer = torch.nn.Linear(8, 3)
    relu = torch.nn.ReLU()
    model = torch.nn.Sequential(_Shift(), relu, layer).eval()
    inputs = torch.stack([torch.full((8,), 0.5), torch.full((8,), 0.9)])  # 0.5 − 0.7 < 0: dead; 0.9: active
    labels = model(inputs).argmax(1)
    _, blind, blockers = _probe(model, inputs, labels, targeted=False, gradient=True)
    assert blind.tolist() == [True, False] and blockers == []
