"""What every attack shares: the callback type, per-sample broadcasting, and the checks made at entry.

The contract (DESIGN.md): ``attack(model, inputs, labels, *, ...) -> adversarial inputs`` with the shape, dtype
and device of ``inputs``; ``model`` maps inputs in [0, 1] to logits; ``labels`` are the true classes, or the
target classes when ``targeted=True``; a sample where no adversarial was found comes back unchanged.
Attacks never call ``.backward()``, change the model's mode, touch its parameters, use the global RNG or print.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from edgewise.distances import DistanceFn
from edgewise.distances import get as get_distance
from edgewise.validation import check_bool, check_generator, check_inputs, check_model

Callback = Callable[[int, dict[str, torch.Tensor]], None]
"""``callback(step, state)``: per-step diagnostics; ``state`` maps names to per-sample tensors (detached)."""

DistanceSpec = str | Callable[[torch.Tensor], DistanceFn]
"""A distance of the registry (``edgewise.distances``) by name, or a factory ``reference -> (perturbed -> (B,))``."""


def batch_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample values (B,) to broadcast against a batch ``like`` (B, ...)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def check_attack_call(model: Any, inputs: Any, labels: Any, *, targeted: Any, generator: Any = None,
                      callback: Any = None, name: str = "model") -> None:
    """The checks every attack makes once at entry (TypeError/ValueError naming the argument): the model
    (argument ``name``) is in eval mode with the inputs' dtype and device (``validation.check_model``),
    ``targeted`` is a bool."""
    if not isinstance(model, nn.Module) and not callable(model):
        raise TypeError(f"{name} must be a torch.nn.Module or a callable, got {type(model).__name__}")
    check_inputs(inputs, labels)
    check_model(model, inputs, name=name)
    check_bool("targeted", targeted)
    check_generator(generator, inputs.device)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")


def quantize(inputs: torch.Tensor, levels: int | None) -> torch.Tensor:
    """Round values in [0, 1] to ``levels`` evenly spaced levels (256: 8-bit images); None: unchanged."""
    if levels is None:
        return inputs
    return inputs.mul(levels - 1).round().div(levels - 1)


def check_levels(levels: Any) -> None:
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or levels < 2):
        raise ValueError(f"levels must be an int >= 2 or None, got {levels!r}")


def steepest_direction(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    """PGD's steepest-ascent direction of ``gradient`` per sample: sign(g) for "linf", g/‖g‖₂ otherwise (0 where
    g = 0). Madry et al. (2018) for ℓ∞; the normalized gradient for ℓ0/ℓ1/ℓ2, whose step is then projected."""
    if norm == "linf":
        return gradient.sign()
    length = gradient.flatten(1).norm(dim=1).clamp_min(torch.finfo(gradient.dtype).tiny)
    return gradient / batch_view(length, gradient)


def bind_distance(distance: DistanceSpec, inputs: torch.Tensor, options: dict[str, Any]) -> DistanceFn:
    """The distance ``perturbed -> (B,)`` to ``inputs``: a registry name (``options`` go to its factory) or a
    user factory. The attacks that take one minimize it along its gradient, so a distance whose values carry no
    gradient (ℓ0, a count) is refused (:func:`check_has_gradient`)."""
    if isinstance(distance, str):
        bound = get_distance(distance, **options)(inputs)
    elif callable(distance):
        bound = distance(inputs)
    else:
        raise TypeError(f"distance must be a registry name or a factory reference -> distance, got {distance!r}")
    check_has_gradient(bound, inputs, distance)
    return bound


def check_has_gradient(distance: DistanceFn, inputs: torch.Tensor, name: DistanceSpec) -> None:
    """``distance`` evaluated at ``inputs`` must carry a gradient: an attack would otherwise minimize its penalty
    alone and report the distance of whatever it found (ℓ0's ``!=`` count has none)."""
    with torch.enable_grad():
        value = distance(inputs.detach().clone().requires_grad_(True))
    if not value.requires_grad:
        raise ValueError(f"distance must have a gradient with respect to perturbed for an attack to minimize it, "
                         f"got {name!r}, whose values carry none (for ℓ0 use sigma_zero or auto(norm='l0'))")
