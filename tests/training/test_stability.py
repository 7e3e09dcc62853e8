"""ReLU stability (Xiao et al. 2019): interval bounds that hold, the RS loss and the ℓ1 term in closed form, the
recipe's penalty, and the loop minimizing it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgewise.attacks.pgd import pgd
from edgewise.models.wrappers import Normalize
from edgewise.training import TrainConfig, train
from edgewise.training.recipes import make_recipe
from edgewise.training.stability import interval_bounds, l1_weights, relu_stability_loss, unstable_fraction


def _network() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(Normalize([0.3], [0.4]),
                         nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 7), nn.ReLU(), nn.Linear(7, 4)).double().eval()


def _pre_activations(model: nn.Sequential, inputs: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
               for m in model.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(inputs)
    for handle in handles:
        handle.remove()
    return seen


def test_bounds_hold_at_every_point_of_the_ball_and_are_tight_on_the_first_layer() -> None:
    model = _network()
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 16, 16, generator=generator, dtype=torch.float64)
    eps = 0.05
    bounds = interval_bounds(model, x, eps)
    assert len(bounds) == 2
    # Random points of the ball ∩ box, its corners among them (every element at an end).
    for corner in (False, True):
        for _ in range(20):
            draw = torch.rand(x.shape, generator=generator, dtype=torch.float64) * 2 - 1
            step = eps * (draw.sign() if corner else draw)
            for value, (lower, upper) in zip(_pre_activations(model, (x + step).clamp(0, 1)), bounds, strict=True):
                assert bool((value >= lower - 1e-12).all()) and bool((value <= upper + 1e-12).all())
    # The first layer's bounds are exact: per unit, each (normalized) input element at the end of the box its
    # weight prefers; the convolution pads the normalized image with zeros.
    conv, normalize = model[1][0], model[0]
    low, high = normalize((x - eps).clamp(0, 1)), normalize((x + eps).clamp(0, 1))
    unfold = nn.functional.unfold
    low_cols, high_cols = unfold(low, 3, padding=1, stride=2), unfold(high, 3, padding=1, stride=2)
    flat = conv.weight.flatten(1).unsqueeze(-1)
    exact_low = (torch.minimum(flat * low_cols.unsqueeze(1), flat * high_cols.unsqueeze(1)).sum(2)
                 + conv.bias.view(1, -1, 1))
    torch.testing.assert_close(bounds[0][0].flatten(2), exact_low)


def test_rs_loss_l1_and_unstable_fraction_in_closed_form() -> None:
    lower = torch.tensor([[-1.0, 0.5, -2.0]])
    upper = torch.tensor([[2.0, 1.0, -1.0]])
    bounds = [(lower, upper), (torch.tensor([[-0.5]]), torch.tensor([[0.5]]))]
    products = torch.tensor([-2.0, 0.5, 2.0, -0.25])
    torch.testing.assert_close(relu_stability_loss(bounds), -torch.tanh(1 + products).mean())
    assert unstable_fraction(bounds) == 0.5
    model = _network()
    expected = sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    torch.testing.assert_close(l1_weights(model), expected)


def test_bad_layers_and_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError, match=r"got Tanh at '1'"):
        interval_bounds(nn.Sequential(nn.Linear(4, 3), nn.Tanh()), torch.rand(2, 4), 0.1)
    with pytest.raises(ValueError, match=r"^eps must be > 0"):
        interval_bounds(_network(), torch.rand(1, 1, 16, 16, dtype=torch.float64), 0.0)
    with pytest.raises(ValueError, match="at least one ReLU"):
        relu_stability_loss([])
    with pytest.raises(ValueError, match=r"^norm must be one of \['linf'\]"):
        make_recipe("relu_stability", {"norm": "l2"})(_network(), torch.rand(1, 1, 16, 16, dtype=torch.float64),
                                                     torch.tensor([0]), generator=torch.Generator())


def test_recipe_is_pgd_plus_the_weighted_penalty() -> None:
    model = _network()
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    out = make_recipe("relu_stability", {"eps": 0.1, "steps": 2, "rs_weight": 3.0, "l1_weight": 0.01})(
        model, x, y, generator=torch.Generator().manual_seed(5))
    expected = pgd(model, x, y, eps=0.1, steps=2, random_init=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out.inputs, expected)
    assert out.penalty is not None and out.penalty.requires_grad
    torch.testing.assert_close(out.penalty, 3.0 * relu_stability_loss(interval_bounds(model, x, 0.1))
                               + 0.01 * l1_weights(model))


def test_training_with_the_penalty_makes_relus_stable(tmp_path: Path) -> None:
    # The loop adds the penalty to the loss: with rs_weight the same run ends with fewer unstable ReLUs.
    generator = torch.Generator().manual_seed(0)
    train_set = (torch.rand(128, 1, 28, 28, generator=generator), torch.randint(0, 10, (128,), generator=generator))
    test_set = (train_set[0][:16], train_set[1][:16])

    def run(rs_weight: float) -> float:
        config = TrainConfig(architecture="tinycnn", recipe="relu_stability", epochs=3, batch_size=32,
                             optimizer="adam", lr=0.01, seed=1,
                             recipe_options={"eps": 0.1, "steps": 1, "rs_weight": rs_weight, "l1_weight": 0.0})
        model = train(config, train_set, test_set, out=tmp_path / str(rs_weight), name="m", progress=False)
        with torch.no_grad():
            return unstable_fraction(interval_bounds(model, test_set[0], 0.1))

    plain, stable = run(0.0), run(5.0)
    assert stable < 0.5 * plain
