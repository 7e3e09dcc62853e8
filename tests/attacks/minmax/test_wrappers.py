"""The min-max wrappers (ensemble, transformation and universal attacks) hand their options to Algorithm 1: the
domain weights the callback reports follow the ascent step wₜ = proj_P(wₜ₋₁ + β (f(δₜ) − γ (wₜ₋₁ − 1/K))) with the
β and γ given, or the paper's values by default (D.2 for ensembles and universal perturbations, Tables A4/A5 for
transformations), for T steps; the C&W loss is floored at −κ (κ = 50 by default); options are checked at entry."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from edgewise.attacks.minmax import ensemble_attack, transform_attack, universal_attack
from edgewise.projections import simplex


def _linear(seed: int, scale: float = 1.0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(36, 3)
    with torch.no_grad():
        layer.weight.copy_(scale * torch.randn(3, 36, generator=generator))
        layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), layer).eval()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(4, 1, 6, 6, generator=generator), torch.randint(0, 3, (4,), generator=generator)


def _ensemble(**options):
    x, y = _data()
    return ensemble_attack([_linear(0), _linear(2), _linear(3)], x, y, eps=0.1, **options)


def _transforms(**options):
    x, y = _data()
    return transform_attack(_linear(0), x, y, transforms=["identity", "hflip", "vflip"], eps=0.1, **options)


def _universal(**options):
    x, y = _data()
    return universal_attack(_linear(0), x, y, group_size=2, eps=0.1, **options)


def _trace(run, **options) -> list[dict[str, torch.Tensor]]:
    seen: list[dict[str, torch.Tensor]] = []
    run(callback=lambda step, state: seen.append({k: v.clone() for k, v in state.items()}), **options)
    return seen


def _follows_the_ascent(seen: list[dict[str, torch.Tensor]], beta: float, gamma: float) -> None:
    uniform = torch.full_like(seen[0]["weights"], 1 / seen[0]["weights"].shape[1])
    torch.testing.assert_close(seen[0]["weights"], uniform)
    for before, after in itertools.pairwise(seen):
        expected = simplex(before["weights"] + beta * (after["losses"] - gamma * (before["weights"] - uniform)))
        torch.testing.assert_close(after["weights"], expected)
    assert not torch.allclose(seen[-1]["weights"], uniform)  # the weights moved: β and γ are seen


@pytest.mark.parametrize("run", [_ensemble, _transforms, _universal])
def test_given_weight_step_and_gamma_reach_the_ascent(run) -> None:
    _follows_the_ascent(_trace(run, steps=6, weight_step=0.05, gamma=0.7), beta=0.05, gamma=0.7)


def test_defaults_are_the_papers() -> None:
    # D.2 (Table 1, ℓ∞ ensembles): T = 50, β = 1/50, γ = 3; Tables A4/A5 (ℓ∞ transformations): T = 20, β = 1/100,
    # γ = 10.
    ensemble = _trace(_ensemble)
    assert len(ensemble) == 51
    _follows_the_ascent(ensemble, beta=1 / 50, gamma=3.0)
    transforms = _trace(_transforms)
    assert len(transforms) == 21
    _follows_the_ascent(transforms, beta=1 / 100, gamma=10.0)
    universal = _trace(_universal)  # "as in ensemble_attack (20 steps by default, D.2)"
    assert len(universal) == 21
    _follows_the_ascent(universal, beta=1 / 50, gamma=3.0)


@pytest.mark.parametrize("wrapper", ["ensemble", "transforms", "universal"])
def test_cw_loss_is_floored_at_kappa_50_by_default(wrapper: str) -> None:
    # Logits scaled by 1000: once fooled, the margin lies far below −50, so the floor is what the losses show.
    x, y = _data()
    model = _linear(0, scale=1000.0)
    with torch.no_grad():
        assert float((model(x).gather(1, y[:, None]).squeeze(1) - model(x).topk(2).values[:, 0]).min()) < -50
    seen: list[torch.Tensor] = []
    record = {"callback": lambda step, state: seen.append(state["losses"])}
    if wrapper == "ensemble":
        ensemble_attack([model, model], x, y, eps=0.1, steps=2, **record)
    elif wrapper == "transforms":
        transform_attack(model, x, y, transforms=["identity", "hflip"], eps=0.1, steps=2, **record)
    else:
        universal_attack(model, x, y, group_size=2, eps=0.1, steps=2, **record)
    assert float(torch.stack(seen).min()) == -50.0


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"weight_step": -1.0}, ValueError, "^weight_step must be > 0"),
    ({"step_size": 0.0}, ValueError, "^step_size must be > 0"),
    ({"gamma": -1.0}, ValueError, "^gamma must be >= 0"),
    ({"callback": 3}, TypeError, "^callback must be callable"),
    ({"loss": "ce", "kappa": 10.0}, ValueError, "^kappa applies only to loss='cw'.*got kappa=10.0 with loss='ce'"),
])
@pytest.mark.parametrize("run", [_ensemble, _transforms, _universal])
def test_bad_options_are_refused_at_entry(run, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        run(steps=2, **kwargs)
