"""Ensemble attack: reported success re-verified on the returned inputs, models and inputs untouched, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgewise.attacks.minmax import ensemble_attack


def _models() -> list[nn.Sequential]:
    generator = torch.Generator().manual_seed(0)
    models = []
    for hidden in (8, 16, 4):
        first, second = nn.Linear(36, hidden), nn.Linear(hidden, 3)
        with torch.no_grad():
            for layer in (first, second):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
                layer.bias.zero_()
        models.append(nn.Sequential(nn.Flatten(), first, nn.ReLU(), second).eval())
    return models


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(10, 1, 6, 6, generator=generator), torch.randint(0, 3, (10,), generator=generator)


@pytest.mark.parametrize("strategy", ["minmax", "average"])
def test_fooled_matches_the_models_on_the_returned_inputs(strategy: str) -> None:
    models, (x, y) = _models(), _data()
    result = ensemble_attack(models, x, y, norm="linf", eps=0.1, steps=10, strategy=strategy)
    with torch.no_grad():
        fooled = torch.stack([model(result.adv).argmax(1) != y for model in models], 1)
        clean = torch.stack([model(x).argmax(1) != y for model in models], 1)
    assert torch.equal(result.fooled, fooled)
    assert torch.equal(result.clean_fooled, clean)
    assert result.adv.shape == x.shape and result.adv.dtype == x.dtype


def test_models_and_inputs_unchanged() -> None:
    models, (x, y) = _models(), _data()
    states = [{k: v.clone() for k, v in model.state_dict().items()} for model in models]
    x_copy = x.clone()
    ensemble_attack(models, x, y, norm="l2", eps=0.5, steps=3)
    assert not any(model.training for model in models)
    models[1].train()  # a model in train mode is refused, named, and left in train mode
    with pytest.raises(ValueError, match=r"models\[1\] must be in eval mode \(call models\[1\]\.eval\(\)\)"):
        ensemble_attack(models, x, y, norm="l2", eps=0.5, steps=3)
    assert models[1].training and not models[0].training
    for model, state in zip(models, states, strict=True):
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key])
        assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x_copy)


def test_single_sample_equals_its_batch_result() -> None:
    models, (x, y) = _models(), _data()
    batch = ensemble_attack(models, x, y, norm="l1", eps=1.0, steps=5)
    alone = ensemble_attack(models, x[3:4], y[3:4], norm="l1", eps=1.0, steps=5)
    torch.testing.assert_close(alone.adv, batch.adv[3:4])
    torch.testing.assert_close(alone.weights, batch.weights[3:4])


@pytest.mark.parametrize("kwargs,error,match", [
    ({"norm": "l3"}, ValueError, "norm must be one of"),
    ({"strategy": "max"}, ValueError, "strategy must be one of"),
    ({"eps": -1.0}, ValueError, "eps must be > 0"),
    ({"steps": 0}, ValueError, "steps must be > 0"),
    ({"loss": "hinge"}, ValueError, "loss must be one of"),
    ({"gamma": -1.0}, ValueError, "gamma must be >= 0"),
    ({"num_steps": 3}, TypeError, "unexpected keyword"),
])
def test_bad_options(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    models, (x, y) = _models(), _data()
    with pytest.raises(error, match=match):
        ensemble_attack(models, x, y, **kwargs)  # type: ignore[arg-type]


def test_bad_models_and_inputs() -> None:
    models, (x, y) = _models(), _data()
    with pytest.raises(TypeError, match="models must be a non-empty list"):
        ensemble_attack([], x, y)
    with pytest.raises(TypeError, match="models must be a non-empty list"):
        ensemble_attack(models[0], x, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"inputs must be in \[0, 1\]"):
        ensemble_attack(models, x + 2, y)
    with pytest.raises(ValueError, match="labels must be in"):
        ensemble_attack(models, x, y + 5)
