"""Penalty-Lagrangian functions P(y, ρ, μ) and their derivatives ∂P/∂y (ALMA paper, Appendix D, eqs. 19-22).

Taken by the ALMA paper from Birgin et al. (2005). ``y`` is the constraint value (DLR⁺, negative when satisfied),
``rho`` the penalty parameter ρ > 0 and ``mu`` the penalty multiplier μ > 0, broadcast per sample. Each satisfies
the four axioms of sec. 3.1: P' >= 0, P'(0) = μ, P' -> inf for y > 0 and P' -> 0 for y < 0 as ρ -> inf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

Tensor = torch.Tensor


def _negative_part(y: Tensor) -> Tensor:
    """min(y, 0): the branch y <= 0 evaluated where it is defined, so that no inf/NaN leaks into gradients."""
    return y.clamp(max=0)


def phr(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    """PHR (eq. 19): (max(0, μ + ρy)² − μ²) / (2ρ)."""
    return ((mu + rho * y).clamp(min=0).square() - mu.square()) / (2 * rho)


def phr_derivative(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    return (mu + rho * y).clamp(min=0)


def p1(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    """P1 (eq. 20): μy + ρy²/2 + ρ²y³ (y >= 0); μy + ρy²/2 (−μ/ρ <= y <= 0); −μ²/(2ρ) (y <= −μ/ρ)."""
    positive = mu * y + rho * y.square() / 2 + rho.square() * y.pow(3)
    middle = mu * y + rho * y.square() / 2
    floor = -mu.square() / (2 * rho)
    return torch.where(y >= 0, positive, torch.where(y >= -mu / rho, middle, floor))


def p1_derivative(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    positive = mu + rho * y + 3 * rho.square() * y.square()
    middle = mu + rho * y
    return torch.where(y >= 0, positive, torch.where(y >= -mu / rho, middle, torch.zeros_like(middle)))


def p2(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    """P2 (eq. 10 / 21), the ALMA default: μy + μρy² + ρ²y³/6 (y >= 0); μy / (1 − ρy) (y <= 0)."""
    negative = _negative_part(y)
    return torch.where(y >= 0, mu * y + mu * rho * y.square() + rho.square() * y.pow(3) / 6,
                       mu * negative / (1 - rho * negative))


def p2_derivative(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    negative = _negative_part(y)
    return torch.where(y >= 0, mu + 2 * mu * rho * y + rho.square() * y.square() / 2,
                       mu / (1 - rho * negative).square())


def p3(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    """P3 (eq. 22): μy + μρy² (y >= 0); μy / (1 − ρy) (y <= 0)."""
    negative = _negative_part(y)
    return torch.where(y >= 0, mu * y + mu * rho * y.square(), mu * negative / (1 - rho * negative))


def p3_derivative(y: Tensor, rho: Tensor, mu: Tensor) -> Tensor:
    negative = _negative_part(y)
    return torch.where(y >= 0, mu + 2 * mu * rho * y, mu / (1 - rho * negative).square())


class Penalty(NamedTuple):
    """A penalty-Lagrangian function and its derivative with respect to the constraint value y."""

    function: Callable[[Tensor, Tensor, Tensor], Tensor]
    derivative: Callable[[Tensor, Tensor, Tensor], Tensor]


PENALTIES: dict[str, Penalty] = {
    "phr": Penalty(phr, phr_derivative),
    "p1": Penalty(p1, p1_derivative),
    "p2": Penalty(p2, p2_derivative),
    "p3": Penalty(p3, p3_derivative),
}


def get(name: str) -> Penalty:
    """The penalty ``name`` (one of "phr", "p1", "p2", "p3")."""
    if name not in PENALTIES:
        raise ValueError(f"penalty must be one of {sorted(PENALTIES)}, got {name!r}")
    return PENALTIES[name]
