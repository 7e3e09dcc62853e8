"""FAB: the closed-form minimal perturbations of affine classifiers (binary, multiclass, box active), targeted,
the passes the counting and budget wrappers see, each step of Algorithm 1 pulling its weight, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edgewise.attacks import ATTACKS
from edgewise.attacks.fab import fab, passes_per_iteration
from edgewise.data import sample
from edgewise.distances import lp
from edgewise.models import CountingModel, load_model
from edgewise.models.wrappers import BudgetModel

NORMS = ("l1", "l2", "linf")
DUAL = {"l1": math.inf, "l2": 2.0, "linf": 1.0}
# FAB's iterates approach the boundary from the adversarial side (η = 1.05 overshoots, β = 0.9 pulls back), so
# after 20 iterations on an affine model they are within 1% of the optimum; nothing can be below it.
WITHIN = 1.01


def _ratio(norm: str, inputs: torch.Tensor, adv: torch.Tensor, optimum: torch.Tensor) -> torch.Tensor:
    return getattr(lp, norm)(inputs, adv) / optimum


@pytest.mark.parametrize("norm", NORMS)
def test_linear_oracle_reaches_the_closed_form_optimum(oracle_factory, norm: str) -> None:
    o = oracle_factory(classes=3)
    adv = fab(o.model, o.inputs, o.labels, norm=norm, steps=20)
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    ratio = _ratio(norm, o.inputs, adv, getattr(o, norm))
    assert float(ratio.min()) >= 1 - 1e-4 and float(ratio.max()) <= WITHIN, ratio


@pytest.mark.parametrize("norm", NORMS)
def test_box_active_oracle_reaches_the_optimum_of_the_free_pixels(box_oracle, norm: str) -> None:
    # Half the pixels are 0 and w > 0 pushes them below the box: the optimum |f| / ‖w_free‖_q moves only the
    # others, and an attack that ignores the box in its projection would stop short of the boundary.
    o = box_oracle
    adv = fab(o.model, o.inputs, o.labels, norm=norm, steps=20)
    assert bool((o.model(adv).argmax(1) != o.labels).all())
    ratio = _ratio(norm, o.inputs, adv, getattr(o, norm))
    assert float(ratio.min()) >= 1 - 1e-4 and float(ratio.max()) <= WITHIN, ratio


def _multiclass(classes: int = 4, dim: int = 32, batch: int = 12, seed: int = 0):
    """An affine classifier Wx + c with ``classes`` competing classes, inputs near 0.5: the minimal untargeted
    ℓp perturbation is min_{l≠y} |f_l − f_y| / ‖w_l − w_y‖_q (the nearest of the half-spaces f_l ≥ f_y), which
    the closest-hyperplane choice of step 1 must find among the K − 1 boundaries."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, dim, generator=generator, dtype=torch.float64)
    bias = torch.linspace(0.2, 0.0, classes, dtype=torch.float64) - weight @ torch.full((dim,), 0.5).double()
    inputs = 0.5 + 0.01 * torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    layer = nn.Linear(dim, classes).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    logits = layer(inputs).detach()
    labels = logits.argmax(1)
    gaps = logits.gather(1, labels.unsqueeze(1)) - logits                             # f_y − f_l ≥ 0
    normals = weight.unsqueeze(0) - weight[labels].unsqueeze(1)                       # w_l − w_y
    optima = {}
    for norm, dual in DUAL.items():
        distance = gaps / normals.norm(p=dual, dim=2)
        distance[torch.arange(batch), labels] = math.inf
        optima[norm] = distance.min(1).values
    # The ℓ1 optimum moves one coordinate by at most this much: inside the box, so the closed form holds.
    assert float(optima["l1"].max()) < 0.45
    return layer.float().eval(), inputs.float(), labels, optima


@pytest.mark.parametrize("norm", NORMS)
def test_multiclass_oracle_picks_the_closest_boundary_in_the_dual_norm(norm: str) -> None:
    model, inputs, labels, optima = _multiclass()
    adv = fab(model, inputs, labels, norm=norm, steps=20)
    assert bool((model(adv).argmax(1) != labels).all())
    ratio = _ratio(norm, inputs, adv, optima[norm])
    assert float(ratio.min()) >= 1 - 1e-4 and float(ratio.max()) <= WITHIN, ratio


@pytest.mark.parametrize("norm", NORMS)
def test_fab_t_over_every_other_class_reaches_the_multiclass_optimum(norm: str) -> None:
    # FAB-T runs one hyperplane per target; over all K − 1 targets the run towards the nearest class finds it.
    model, inputs, labels, optima = _multiclass()
    adv = fab(model, inputs, labels, norm=norm, steps=20, target_classes=9)  # 9 > K − 1 = 3: all of them
    assert bool((model(adv).argmax(1) != labels).all())
    ratio = _ratio(norm, inputs, adv, optima[norm])
    assert float(ratio.min()) >= 1 - 1e-4 and float(ratio.max()) <= WITHIN, ratio


def test_fab_t_targets_the_most_likely_classes_first() -> None:
    # With one target, FAB-T crosses towards the second most likely class at the input.
    model, inputs, labels, _ = _multiclass(classes=5)
    logits = model(inputs).detach()
    logits[torch.arange(len(labels)), labels] = -math.inf
    adv = fab(model, inputs, labels, norm="l2", steps=20, target_classes=1)
    assert torch.equal(model(adv).argmax(1), logits.argmax(1))


@pytest.mark.parametrize("norm", NORMS)
def test_targeted_reaches_the_target_at_the_optimum(oracle_factory, norm: str) -> None:
    # Class 2 never wins, so reaching the other class is the binary problem: the same closed form.
    o = oracle_factory(classes=3)
    targets = 1 - o.labels
    adv = fab(o.model, o.inputs, targets, norm=norm, steps=20, targeted=True)
    assert bool((o.model(adv).argmax(1) == targets).all())
    ratio = _ratio(norm, o.inputs, adv, getattr(o, norm))
    assert float(ratio.min()) >= 1 - 1e-4 and float(ratio.max()) <= WITHIN, ratio


def test_targeted_multiclass_reaches_a_chosen_class() -> None:
    model, inputs, labels, _ = _multiclass(classes=5)
    targets = (labels + 2) % 5
    adv = fab(model, inputs, targets, norm="l2", steps=40, targeted=True)
    assert bool((model(adv).argmax(1) == targets).all())
    # Reaching t means at least crossing f_t = f_y: never below that hyperplane's distance.
    rows = torch.arange(len(labels))
    weight, bias = model.weight.double(), model.bias.double()
    logits = inputs.double() @ weight.T + bias
    bound = (logits[rows, labels] - logits[rows, targets]) / (weight[targets] - weight[labels]).norm(dim=1)
    assert bool((lp.l2(inputs, adv) >= bound.float() * (1 - 1e-4)).all())


def _ten_classes() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(10, 16, generator=generator))
    inputs = torch.rand(6, 1, 4, 4, generator=generator)
    return model, inputs, model(inputs).argmax(1)


@pytest.mark.parametrize(("variant", "targets"), [("untargeted", 1), ("targeted", 1), ("fab_t", 3)])
def test_passes_per_iteration_as_documented(variant: str, targets: int) -> None:
    # K = 10: K − 1 backwards and 2 forwards per iteration untargeted, 1 and 2 targeted and FAB-T (whose runs are
    # targets × restarts); plus the 3 forwards of the final search.
    model, inputs, labels = _ten_classes()
    labels = (labels + 1) % 10 if variant == "targeted" else labels
    options = {"target_classes": targets} if variant == "fab_t" else {"targeted": variant == "targeted"}
    counting = CountingModel(model)
    fab(counting, inputs, labels, norm="l2", steps=4, restarts=2, **options)
    runs, steps, batch = 2 * targets, 4, len(inputs)
    one = variant != "untargeted"
    assert counting.forwards == batch * (runs * steps * 2 + 3)
    assert counting.backwards == batch * runs * steps * (1 if one else 9)
    assert counting.forwards + counting.backwards == batch * (runs * steps * passes_per_iteration(10, targeted=one) + 3)


@pytest.mark.parametrize(("budget", "expected"), [(13, 1), (14, 14), (100, 100), (1000, 1000)])
def test_budget_is_spent_and_seen_by_the_benchmark_wrapper(budget: int, expected: int) -> None:
    # BudgetModel counts each backward of the Jacobian's K − 1 through its gate: what it charges is what FAB
    # declares, ⌊(Q − 3) / (K + 1)⌋ iterations of K + 1 passes and the rest for the final search (at least 3
    # forwards), Q in all; where no iteration fits, only the first forward is made.
    model, inputs, labels = _ten_classes()
    wrapped = BudgetModel(model, inputs, labels, budget=budget, distance="l2")
    counting = CountingModel(wrapped)
    fab(counting, inputs, labels, norm="l2", budget=budget)
    assert torch.equal(wrapped.spent, torch.full_like(wrapped.spent, expected))
    assert counting.forwards + counting.backwards == len(inputs) * expected


def test_registry_entry_spends_twice_steps() -> None:
    model, inputs, labels = _ten_classes()
    counting = CountingModel(model)
    ATTACKS["fab"](counting, inputs, labels, norm="linf", steps=50)
    assert counting.forwards + counting.backwards == len(inputs) * 100


@pytest.fixture(scope="module")
def mlp():
    inputs, labels = sample()
    return load_model("mlp-fmnist"), inputs[:32], labels[:32]


def _geometric_ratio(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, norm: str,
                     **broken: float) -> float:
    # Without the final search, which would bring some of the larger distances back towards the boundary.
    reference = getattr(lp, norm)(inputs, fab(model, inputs, labels, norm=norm, steps=20, final_search=0))
    adv = fab(model, inputs, labels, norm=norm, steps=20, final_search=0, **broken)
    distance = torch.where(model(adv).argmax(1) != labels, getattr(lp, norm)(inputs, adv), math.inf)
    kept = reference > 0  # clean errors are at 0 either way
    return float((distance[kept] / reference[kept]).clamp(max=10).log().mean().exp())


@pytest.mark.parametrize("norm", NORMS)
def test_backward_step_and_extrapolation_make_it_smaller(mlp, norm: str) -> None:
    # Without the backward step (β → 1) the iterates stay at the boundary where they crossed it; without the
    # extrapolation (η = 1) they land on the linearized boundary from the clean side and often stay there. On
    # the MLP either makes the distances larger, by 14-18% and 2-29% (geometric mean, 32 images).
    model, inputs, labels = mlp
    assert _geometric_ratio(model, inputs, labels, norm, beta=0.999999) > 1.05
    assert _geometric_ratio(model, inputs, labels, norm, eta=1.0) > 1.01


def test_bias_towards_the_original_makes_it_smaller(mlp) -> None:
    # α = min(‖δ‖/(‖δ‖ + ‖δ_orig‖), α_max) mixes in the projection of the original point: without it (α_max →
    # 0) the ℓ∞ distances are 3% larger on the MLP (ℓ1 1.5%, ℓ2 0.8%: the effect is largest in ℓ∞).
    model, inputs, labels = mlp
    assert _geometric_ratio(model, inputs, labels, "linf", alpha_max=1e-6) > 1.01


def test_restarts_and_final_search_never_lose_and_help(mlp) -> None:
    # The first run is the same with or without restarts; the final search only adds candidates.
    model, inputs, labels = mlp
    one = lp.l2(inputs, fab(model, inputs, labels, norm="l2", steps=10, final_search=0))
    three = lp.l2(inputs, fab(model, inputs, labels, norm="l2", steps=10, restarts=3, final_search=0,
                              generator=torch.Generator().manual_seed(1)))
    searched = lp.l2(inputs, fab(model, inputs, labels, norm="l2", steps=10))
    assert bool((three <= one).all()) and bool((searched <= one).all())
    assert bool((searched < one).sum() >= len(one) // 2)


def test_clean_errors_come_back_unchanged() -> None:
    model, inputs, labels = _ten_classes()
    wrong = (labels + 1) % 10
    adv = fab(model, inputs, wrong, norm="l2", steps=3)
    assert torch.equal(adv, inputs)


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"norm": "l0"}, ValueError, "norm must be one of"),
    ({"steps": 0}, ValueError, "steps must be > 0"),
    ({"steps": 2.5}, TypeError, "steps must be an int"),
    ({"steps": 3, "budget": 30}, ValueError, "steps and budget are exclusive"),
    ({"budget": 0}, ValueError, "budget must be > 0"),
    ({"restarts": 0}, ValueError, "restarts must be > 0"),
    ({"alpha_max": 1.5}, ValueError, r"alpha_max must be in \(0, 1\)"),
    ({"eta": 0.9}, ValueError, "eta must be >= 1"),
    ({"beta": 0}, ValueError, "beta must be > 0"),
    ({"eps": -1.0}, ValueError, "eps must be > 0"),
    ({"final_search": -1}, ValueError, "final_search must be >= 0"),
    ({"target_classes": 0}, ValueError, "target_classes must be > 0"),
    ({"target_classes": 2, "targeted": True}, ValueError, "target_classes is FAB-T, an untargeted attack"),
    ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
    ({"no_such_option": 1}, TypeError, "no_such_option"),
])
def test_bad_input_names_the_argument(options: dict, error: type, match: str) -> None:
    model, inputs, labels = _ten_classes()
    with pytest.raises(error, match=match):
        fab(model, inputs, labels, **options)


def test_bad_model_output() -> None:
    _, inputs, labels = _ten_classes()
    with pytest.raises(ValueError, match="at least 2 classes"):
        fab(nn.Sequential(nn.Flatten(), nn.Linear(16, 1)).eval(), inputs, torch.zeros_like(labels))
    with pytest.raises(ValueError, match="model must return logits"):
        fab(nn.Flatten(0).eval(), inputs, labels)


def _linf_target_minimum(layer: nn.Linear, point: torch.Tensor, target: int) -> float:
    """The exact minimal ℓ∞ perturbation into the target's region of a linear model: (W_j − W_t)(x + δ) + b_j − b_t
    ≤ 0 for every j ≠ t, a linear program (inf where the region misses the box)."""
    from ..conftest import polyhedron_minimum  # type: ignore[import-not-found]

    weight, bias, x = (t.detach().double().numpy() for t in (layer.weight, layer.bias, point[0]))
    rows = weight[[j for j in range(len(bias)) if j != target]] - weight[target]
    offsets = bias[[j for j in range(len(bias)) if j != target]] - bias[target] + rows @ x
    return polyhedron_minimum(rows, -offsets, x, "linf")


def test_targeted_steps_alternate_between_two_boundaries_instead_of_cycling() -> None:
    # Before: with two classes close to overtaking the target, the one-hyperplane step crossed one boundary while
    # projecting onto the other and the iterate alternated between them, never classified as the target
    # (targeted_rounds=0 keeps that step). Random 4-class linear models, least likely class as the target.
    torch.manual_seed(0)
    failed = {(norm, rounds): 0 for norm in ("linf", "l2") for rounds in (0, 5)}
    feasible = 0
    for _ in range(80):
        layer = nn.Linear(6, 4).double()
        point = torch.rand(1, 6, dtype=torch.float64)
        target = int(layer(point).argmin())
        minimum = _linf_target_minimum(layer, point, target)
        if math.isinf(minimum):
            continue
        feasible += 1
        model = nn.Sequential(layer).eval()
        for norm, rounds in failed:
            adv = fab(model, point, torch.tensor([target]), norm=norm, steps=100, targeted=True,
                      targeted_rounds=rounds)
            if int(model(adv).argmax()) != target:
                failed[norm, rounds] += 1
            elif norm == "linf":  # never below the exact minimum
                assert float((adv - point).abs().max()) >= minimum * (1 - 1e-6)
    assert feasible >= 30
    assert failed["linf", 5] <= failed["linf", 0] - 2 and failed["l2", 5] <= failed["l2", 0] - 2, failed


def test_targeted_rounds_must_be_a_count(linear_oracle) -> None:
    o = linear_oracle
    with pytest.raises(ValueError, match="targeted_rounds must be >= 0"):
        fab(o.model, o.inputs, 1 - o.labels, targeted=True, targeted_rounds=-1)
