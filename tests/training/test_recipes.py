"""Training recipes: the adversaries follow their papers' equations and stay inside their threat models."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn import functional as F

from edgewise.attacks.ddn import ddn
from edgewise.attacks.pgd import pgd, pgd_step, random_start
from edgewise.distances import lp
from edgewise.models.zoo import build_model
from edgewise.projections import simplex
from edgewise.training.recipes import RECIPES, make_recipe, threat_models

NORMS = ("linf", "l2", "l1")
EPS = (0.1, 1.5, 10.0)


@pytest.fixture
def batch() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("lenet", mean=0.3, std=0.35).eval()
    generator = torch.Generator().manual_seed(1)
    return model, torch.rand(6, 1, 28, 28, generator=generator), torch.randint(0, 10, (6,), generator=generator)


def test_unknown_recipe_and_option() -> None:
    with pytest.raises(ValueError, match="recipe must be one of"):
        make_recipe("fgsm", {})
    with pytest.raises(TypeError, match=r"takes no option\(s\) \['bogus'\]"):
        make_recipe("ampgd", {"bogus": 1})
    assert set(RECIPES) == {"standard", "pgd", "ddn", "relu_stability", "ampgd", "max", "avg", "msd"}


def test_standard_is_the_clean_batch(batch) -> None:
    model, x, y = batch
    out = make_recipe("standard", {})(model, x, y, generator=torch.Generator())
    assert torch.equal(out.inputs, x) and torch.equal(out.labels, y) and torch.equal(out.weights, torch.ones(6))


def test_pgd_recipe_is_pgd_within_the_ball(batch) -> None:
    model, x, y = batch
    out = make_recipe("pgd", {"eps": 0.1, "steps": 3})(model, x, y, generator=torch.Generator().manual_seed(5))
    expected = pgd(model, x, y, eps=0.1, steps=3, random_init=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out.inputs, expected)
    assert float((out.inputs - x).abs().max()) <= 0.1 + 1e-6 and out.inputs.min() >= 0 and out.inputs.max() <= 1


def test_ddn_recipe_projects_onto_the_l2_ball_and_mixes_clean(batch) -> None:
    """Eq. 9 on inputs the attack moves: labels are the model's own predictions, so every input starts correctly
    classified and DDN changes it (with the fixture's random labels the untrained model misclassifies almost
    every input and DDN returns them unchanged, which no projection can get wrong)."""
    model, x, _ = batch
    with torch.no_grad():
        y = model(x).argmax(1)
    found = ddn(model, x, y, steps=5, generator=torch.Generator())
    distances = lp.l2(x, found)
    assert bool((distances > 0).all())
    eps = float(distances.median())  # the projection is active for half of the samples, inactive for the rest
    out = make_recipe("ddn", {"eps": eps, "steps": 5})(model, x, y, generator=torch.Generator())
    adv, clean = out.inputs[:6], out.inputs[6:]
    assert torch.equal(clean, x) and torch.equal(out.labels, y.repeat(2))
    assert torch.equal(out.weights, torch.full((12,), 0.5))
    inside = distances <= eps
    assert 0 < int(inside.sum()) < 6
    torch.testing.assert_close(adv[inside], found[inside])                       # inside the ball: DDN's point
    outside = ~inside
    moved, target = (adv - x)[outside].flatten(1), (found - x)[outside].flatten(1)
    torch.testing.assert_close(moved.norm(dim=1), torch.full((int(outside.sum()),), eps))  # on the sphere ...
    cosine = (moved * target).sum(1) / (moved.norm(dim=1) * target.norm(dim=1))
    assert float(cosine.min()) > 0.999                                            # ... along DDN's direction
    eq9 = make_recipe("ddn", {"eps": eps, "steps": 5, "clean_weight": 0.0})(model, x, y, generator=torch.Generator())
    assert len(eq9.inputs) == 6 and torch.equal(eq9.weights, torch.ones(6)) and torch.equal(eq9.inputs, adv)


def test_ampgd_one_step_is_the_supplement_update(batch) -> None:
    """R = 1: w₁ = proj_P(1/K + β (f(δ₀,₁), …, f(δ₀,K))) and δᵢ,₁ = proj_Xᵢ(δᵢ,₀ + α εᵢ d(wᵢ ∇f(δᵢ,₀)))."""
    model, x, y = batch
    beta, alpha = 0.5, 0.3
    out = make_recipe("ampgd", {"norms": NORMS, "eps": EPS, "steps": 1, "weight_step": beta, "step_size": alpha})(
        model, x, y, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    starts = [random_start(x, norm=n, eps=e, generator=generator) for n, e in zip(NORMS, EPS, strict=True)]
    losses, deltas = [], []
    for start, norm, eps in zip(starts, NORMS, EPS, strict=True):
        point = start.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x + point), y, reduction="none")
        (gradient,) = torch.autograd.grad(loss.sum() / 3, point)  # wᵢ = 1/K
        losses.append(loss.detach())
        deltas.append(pgd_step(start, x, gradient, norm=norm, eps=eps, step_size=alpha))
    weights = simplex(torch.full((6, 3), 1 / 3) + beta * torch.stack(losses, 1))
    torch.testing.assert_close(out.weights, weights.T.reshape(-1))
    torch.testing.assert_close(out.inputs, torch.cat([x + d for d in deltas]))
    assert torch.equal(out.labels, y.repeat(3))


def test_ampgd_weights_on_the_simplex_and_perturbations_in_their_balls(batch) -> None:
    model, x, y = batch
    out = make_recipe("ampgd", {"norms": NORMS, "eps": EPS, "steps": 4})(model, x, y, generator=torch.Generator())
    weights = out.weights.view(3, 6).T
    assert bool((weights >= 0).all()) and torch.allclose(weights.sum(1), torch.ones(6))
    for i, (norm, eps) in enumerate(zip(NORMS, EPS, strict=True)):
        delta = out.inputs[6 * i:6 * (i + 1)] - x
        assert float(getattr(lp, norm)(x, x + delta).max()) <= eps * (1 + 1e-5)


def test_max_and_avg_use_the_per_norm_pgd_adversarials(batch) -> None:
    model, x, y = batch
    options = {"norms": NORMS, "eps": EPS, "steps": 2}
    generator = torch.Generator().manual_seed(9)
    candidates = [pgd(model, x, y, norm=n, eps=e, steps=2, random_init=True, generator=generator)
                  for n, e in zip(NORMS, EPS, strict=True)]
    average = make_recipe("avg", options)(model, x, y, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(average.inputs, torch.cat(candidates))
    assert torch.allclose(average.weights, torch.full((18,), 1 / 3))
    worst = make_recipe("max", options)(model, x, y, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(c), y, reduction="none") for c in candidates], 1)
        chosen = F.cross_entropy(model(worst.inputs), y, reduction="none")
    torch.testing.assert_close(chosen, losses.amax(1))


def test_msd_step_keeps_the_best_ball_per_sample(batch) -> None:
    model, x, y = batch
    out = make_recipe("msd", {"norms": NORMS, "eps": EPS, "steps": 1, "step_size": 0.5})(
        model, x, y, generator=torch.Generator())
    zero = torch.zeros_like(x).requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(model(x + zero), y, reduction="sum"), zero)
    candidates = [pgd_step(torch.zeros_like(x), x, gradient, norm=n, eps=e, step_size=0.5)
                  for n, e in zip(NORMS, EPS, strict=True)]
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(x + c), y, reduction="none") for c in candidates], 1)
        chosen = F.cross_entropy(model(out.inputs), y, reduction="none")
    torch.testing.assert_close(chosen, losses.amax(1))
    inside = torch.stack([getattr(lp, n)(x, out.inputs) <= e * (1 + 1e-5) for n, e in zip(NORMS, EPS, strict=True)], 1)
    assert bool(inside.any(1).all())


def test_multinorm_threats_are_checked(batch) -> None:
    model, x, y = batch
    with pytest.raises(ValueError, match="same K >= 2"):
        make_recipe("msd", {"norms": ["linf"], "eps": [0.1]})(model, x, y, generator=torch.Generator())
    with pytest.raises(ValueError, match="norms must be one of"):
        make_recipe("avg", {"norms": ["l3", "l2"], "eps": [0.1, 1.0]})(model, x, y, generator=torch.Generator())


def test_threat_models_follow_the_recipe_defaults_and_options() -> None:
    assert threat_models("standard", {}) == []
    assert threat_models("pgd", {}) == [("linf", 0.1)]
    assert threat_models("pgd", {"norm": "l2", "eps": 0.5}) == [("l2", 0.5)]
    assert threat_models("ddn", {}) == [("l2", 2.4)]
    assert threat_models("ampgd", {}) == [("linf", 0.1), ("l2", 1.5), ("l1", 10.0)]
    assert threat_models("msd", {"norms": ["l2", "l1"], "eps": [1.0, 5.0]}) == [("l2", 1.0), ("l1", 5.0)]


def test_threat_models_refuse_norms_and_radii_of_different_lengths() -> None:
    with pytest.raises(ValueError):
        threat_models("msd", {"norms": ["l2", "l1"], "eps": [1.0]})


def test_ddn_recipe_names_its_bad_options(batch) -> None:
    model, x, y = batch
    with pytest.raises(ValueError, match=r"^eps must be > 0"):
        make_recipe("ddn", {"eps": -1.0})(model, x, y, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"^clean_weight must be"):
        make_recipe("ddn", {"clean_weight": 1.5})(model, x, y, generator=torch.Generator())


def test_multinorm_recipe_without_eps_uses_the_default_radii(batch) -> None:
    model, x, y = batch
    out = make_recipe("avg", {"steps": 1})(model, x, y, generator=torch.Generator().manual_seed(2))
    assert out.inputs.shape == (18, *x.shape[1:])
    for i, (norm, eps) in enumerate(threat_models("avg", {})):
        assert float(getattr(lp, norm)(x, out.inputs[6 * i:6 * (i + 1)]).max()) <= eps * (1 + 1e-5)


@pytest.mark.parametrize("recipe", ["ampgd", "avg", "max", "msd"])
def test_multinorm_recipes_follow_the_inputs_device(batch, recipe: str) -> None:
    # With "meta" as the default device, a tensor made without device= meets the CPU inputs and fails, as it
    # would on a GPU: this runs the device check on a CPU-only machine.
    model, x, y = batch
    make = make_recipe(recipe, {"norms": NORMS, "eps": EPS, "steps": 2})
    expected = make(model, x, y, generator=torch.Generator().manual_seed(2))
    with torch.device("meta"):
        found = make(model, x, y, generator=torch.Generator().manual_seed(2))
    for name in ("inputs", "labels", "weights"):
        assert getattr(found, name).device == x.device and torch.equal(getattr(found, name), getattr(expected, name))


@pytest.mark.parametrize(("recipe", "options", "message"), [
    ("ampgd", {"eps": 0.1}, r"eps must be a list of 3 numbers \(one per norm of norms\), got float"),
    ("msd", {"norms": "linf"}, r"norms must be a list of norm names, got str"),
    ("max", {"norms": ["linf", "l2"], "eps": "0.1,1.5"}, r"eps must be a list of 2 numbers"),
])
def test_multinorm_options_of_the_wrong_kind_are_named(batch, recipe: str, options: dict[str, Any],
                                                       message: str) -> None:
    # Before: a single eps (as the pgd recipe takes) failed with "'float' object is not iterable", and a norms
    # string was split into its letters (KeyError 'l'), on the first batch of a training run.
    model, x, y = batch
    with pytest.raises(TypeError, match=message):
        make_recipe(recipe, {**options, "steps": 1})(model, x, y, generator=torch.Generator())
    with pytest.raises(TypeError, match=message):
        threat_models(recipe, options)
