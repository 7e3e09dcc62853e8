"""ReLU stability for verifiable networks — Xiao, Tjeng, Shafiullah & Madry, *Training for Faster Adversarial
Robustness Verification via Inducing ReLU Stability* (ICLR 2019).

An exact verifier (``edgewise.exact``) needs one binary variable per ReLU whose input can take both signs in the
ε-ball; its time grows with their number. Xiao et al. train so that fewer are: next to adversarial training
(their sec. 3.1) and ℓ1 weight regularization (sec. 3.2, sparse weights), the RS loss (sec. 3.3)

    L_RS = −Σᵢ tanh(1 + lᵢ uᵢ),

over the ReLUs i, with [lᵢ, uᵢ] bounds of ReLU i's input over the ε-ball by interval arithmetic, is lowest where
lᵢ and uᵢ share a sign (the ReLU is stable, lᵢ uᵢ > 0) and pushes the unstable ones (lᵢ < 0 < uᵢ) towards either
side. Their training bounds are interval arithmetic too (their "naive" IA; the improved IA of their appendix
tightens them by a little). Here the RS loss is averaged over ReLUs and samples, so that its weight does not
depend on the network's width.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgewise.models.wrappers import Normalize, leaves
from edgewise.validation import check_positive


def interval_bounds(model: nn.Module, inputs: torch.Tensor, eps: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Lower and upper bounds of every ReLU's input over {x' : ‖x' − x‖∞ ≤ ε} ∩ [0, 1]ⁿ, per sample, by interval
    arithmetic in center-radius form (an affine layer maps the center, |W| the radius), in the order of the ReLUs.

    ``model``: an nn.Sequential (nested ones allowed) of Normalize, Linear, Conv2d, ReLU, MaxPool2d and Flatten.
    Differentiable in the model's parameters."""
    check_positive("eps", eps)
    lower, upper = (inputs - eps).clamp(0, 1), (inputs + eps).clamp(0, 1)
    bounds = []
    for name, layer in leaves(model):
        center, radius = (upper + lower) / 2, (upper - lower) / 2
        if isinstance(layer, Normalize):
            center, radius = layer(center), radius / layer.std
        elif isinstance(layer, nn.Linear):
            center, radius = layer(center), F.linear(radius, layer.weight.abs())
        elif isinstance(layer, nn.Conv2d) and layer.padding_mode == "zeros":
            center = layer(center)
            radius = F.conv2d(radius, layer.weight.abs(), None, layer.stride, layer.padding, layer.dilation,
                              layer.groups)
        elif isinstance(layer, nn.ReLU):
            bounds.append((lower, upper))
            lower, upper = lower.relu(), upper.relu()
            continue
        elif isinstance(layer, (nn.MaxPool2d, nn.Flatten)):  # monotone: the bounds map through
            lower, upper = layer(lower), layer(upper)
            continue
        else:
            raise TypeError(f"interval_bounds takes Normalize, Linear, Conv2d (zero padding), ReLU, MaxPool2d and "
                            f"Flatten layers, got {type(layer).__name__} at {name!r}")
        lower, upper = center - radius, center + radius
    return bounds


def relu_stability_loss(bounds: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """−tanh(1 + l·u) averaged over every ReLU of every sample (Xiao et al. 2019, sec. 3.3): in (−1, 1), lowest
    when every ReLU is stable."""
    if not bounds:
        raise ValueError("bounds must hold at least one ReLU's (lower, upper), got none")
    products = torch.cat([(lower * upper).flatten(1) for lower, upper in bounds], dim=1)
    return -torch.tanh(1 + products).mean()


def unstable_fraction(bounds: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The fraction of ReLUs whose input bounds straddle 0 (l < 0 < u), over all ReLUs and samples."""
    flags = torch.cat([((lower < 0) & (upper > 0)).flatten(1) for lower, upper in bounds], dim=1)
    return float(flags.double().mean())


def l1_weights(model: nn.Module) -> torch.Tensor:
    """Σ |W| over the weights of the Linear and Conv2d layers (Xiao et al. sec. 3.2; biases are not penalized)."""
    return torch.stack([layer.weight.abs().sum() for _, layer in leaves(model)
                        if isinstance(layer, (nn.Linear, nn.Conv2d))]).sum()
