"""Shared fixtures: linear oracle models whose minimal adversarial perturbations are known in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn


@dataclass
class LinearOracle:
    """A binary linear classifier logits = [0, w·x + b] and inputs whose minimal perturbations are interior.

    For f(x) = w·x + b, the smallest ℓp perturbation that flips sign(f) is |f(x)| / ‖w‖_q with q the dual
    norm: ℓ2 -> ‖w‖₂, ℓ1 -> ‖w‖∞ (move the single coordinate of largest |w|), ℓ∞ -> ‖w‖₁. The inputs are
    chosen so that every optimal perturbation stays inside [0, 1] (the box constraint is not active).
    """

    model: nn.Module
    inputs: torch.Tensor
    labels: torch.Tensor
    l2: torch.Tensor
    l1: torch.Tensor
    linf: torch.Tensor


def make_linear_oracle(batch: int = 8, shape: tuple[int, ...] = (1, 8, 8), *, seed: int = 0) -> LinearOracle:
    generator = torch.Generator().manual_seed(seed)
    dim = int(torch.tensor(shape).prod())
    w = torch.randn(dim, generator=generator, dtype=torch.float64)
    w = w / w.norm()
    inputs = 0.35 + 0.3 * torch.rand(batch, dim, generator=generator, dtype=torch.float64)
    # Move each input along w to w·x = ±margin; margins so small that even the ℓ1-optimal single-coordinate
    # move (|f| / max|w|) stays inside the box.
    margin = (0.02 + 0.08 * torch.rand(batch, generator=generator, dtype=torch.float64)) * w.abs().max()
    sign = torch.where(torch.arange(batch) % 2 == 0, 1.0, -1.0).double()
    inputs = inputs + (sign * margin - inputs @ w).unsqueeze(1) * w
    layer = nn.Linear(dim, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.zeros_like(w), w]))
    f = (inputs @ w).abs()
    return LinearOracle(
        model=nn.Sequential(nn.Flatten(), layer).eval(),
        inputs=inputs.float().view(batch, *shape),
        labels=(sign > 0).long(),
        l2=(f / w.norm(p=2)).float(),
        l1=(f / w.abs().max()).float(),
        linf=(f / w.abs().sum()).float(),
    )


@pytest.fixture
def linear_oracle() -> LinearOracle:
    return make_linear_oracle()
