"""What every attack shares (edgewise.attacks.base), seen through an attack or against its defining property."""

from __future__ import annotations

import pytest
import torch

from edgewise.attacks import alma, cw, ddn
from edgewise.attacks.base import steepest_direction


def test_a_plain_function_is_a_model_and_anything_else_is_refused(linear_oracle) -> None:
    # DESIGN.md: "model maps inputs in [0, 1] to logits", a module or any callable.
    o = linear_oracle
    module = ddn(o.model, o.inputs, o.labels, steps=20, levels=None)
    function = ddn(lambda x: o.model(x), o.inputs, o.labels, steps=20, levels=None)
    assert torch.equal(module, function)
    with pytest.raises(TypeError, match=r"^model must be a torch\.nn\.Module or a callable, got str"):
        ddn("smallcnn-fmnist", o.inputs, o.labels, steps=20)


def test_two_levels_are_allowed_and_give_black_and_white_images(linear_oracle) -> None:
    o = linear_oracle
    adv = ddn(o.model, o.inputs, o.labels, steps=20, levels=2)
    changed = (adv != o.inputs).flatten(1).any(1)
    assert bool(changed.any())
    assert bool(((adv[changed] == 0) | (adv[changed] == 1)).all())


@pytest.mark.parametrize("norm,dual", [("linf", 1.0), ("l2", 2.0)])
def test_steepest_direction_maximizes_the_first_order_gain_in_the_unit_ball(norm: str, dual: float) -> None:
    # The steepest ascent direction of g in the unit ball of ℓp maximizes ⟨g, v⟩ over ‖v‖p ≤ 1; the maximum is
    # the dual norm ‖g‖q (q = 1 for ℓ∞, 2 for ℓ2), reached by sign(g) and by g / ‖g‖₂.
    gradient = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    direction = steepest_direction(gradient, norm)
    size = float("inf") if norm == "linf" else 2.0
    torch.testing.assert_close(direction.flatten(1).norm(p=size, dim=1), torch.ones(4, dtype=torch.float64))
    gain = (gradient * direction).flatten(1).sum(1)
    torch.testing.assert_close(gain, gradient.flatten(1).norm(p=dual, dim=1))


@pytest.mark.parametrize("attack", [alma, cw])
@pytest.mark.parametrize("distance", ["l0", lambda reference: lambda perturbed: (perturbed != reference).sum((1, 2, 3))
                                      .to(reference.dtype)])
def test_a_distance_without_gradient_is_refused(oracle_factory, attack, distance) -> None:
    # alma and cw minimize the distance along its gradient: ℓ0 (a count) has none, so they ran on the penalty
    # alone and reported the ℓ0 of whatever they found as a minimal ℓ0 (cw --distance l0: median 623 of 784).
    o = oracle_factory(classes=3)
    with pytest.raises(ValueError, match=r"^distance must have a gradient .* got .*whose values carry none"):
        attack(o.model, o.inputs, o.labels, distance=distance, steps=2, **({"init_distance": 1.0}
                                                                          if attack is alma else {}))
