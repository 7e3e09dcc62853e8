"""ℓp distances between images, per sample: ``(reference, perturbed) -> (B,)``.

Each is the plain norm of ``perturbed - reference`` flattened per sample (``torch.linalg.vector_norm``).
The ℓ2 norm is written as sqrt(sum(d²) + 0) with a safe gradient at d = 0 (returns a zero gradient there
instead of NaN), since minimal attacks start exactly at the reference.
"""

from __future__ import annotations

import math

import torch

DUAL_ORDER = {"l1": math.inf, "l2": 2.0, "linf": 1.0}
"""q of each ℓp's dual norm (1/p + 1/q = 1): the norm of a gradient that gives the linear distance to a
boundary, |g| / ‖∇g‖_q."""


def _flat(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    return (perturbed - reference).flatten(1)


def l0(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Number of changed elements (not differentiable; for metrics)."""
    return (_flat(reference, perturbed) != 0).sum(1).to(reference.dtype)


def l1(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Sum of absolute differences."""
    return _flat(reference, perturbed).abs().sum(1)


def l2(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Euclidean norm; gradient 0 (not NaN) where perturbed == reference."""
    squared = _flat(reference, perturbed).square().sum(1)
    # sqrt'(0) is inf: take the root of a strictly positive value and mask the zero case (NaN-free backward).
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1).sqrt(), 0)


def linf(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Largest absolute difference."""
    return _flat(reference, perturbed).abs().amax(1)
