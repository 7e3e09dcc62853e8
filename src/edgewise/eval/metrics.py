"""Metrics of the ALMA paper's protocol (sec. 5): success rate, median distance, robust-accuracy curves.

Conventions: ``distances`` is (N,) with 0 for samples misclassified without attack and ``inf`` where the
attack failed, so that robust accuracy at ε is the fraction of samples whose distance exceeds ε.
"""

from __future__ import annotations

import torch


def success_rate(success: torch.Tensor) -> float:
    """Fraction of samples for which a verified adversarial was found (clean errors count as found)."""
    return float(success.float().mean())


def median_distance(distances: torch.Tensor) -> float:
    """Median over all samples, failures counted as +inf (worst case), as in DDN sec. 4 / ALMA Table 1."""
    return float(distances.double().median()) if distances.numel() else float("nan")


def mean_distance(distances: torch.Tensor, success: torch.Tensor) -> float:
    """Mean distance over the successful samples only (nan if none)."""
    chosen = distances[success]
    return float(chosen.double().mean()) if chosen.numel() else float("nan")


def robust_accuracy(distances: torch.Tensor, eps: float) -> float:
    """Accuracy under the attack for a budget ``eps``: fraction of samples with distance > eps."""
    return float((distances > eps).double().mean())


def robust_accuracy_curve(distances: torch.Tensor, eps_grid: torch.Tensor) -> torch.Tensor:
    """Robust accuracy at each budget of ``eps_grid`` (the curves of the ALMA paper's figures)."""
    return (distances.double().unsqueeze(0) > eps_grid.double().unsqueeze(1)).double().mean(1)


def eps_grid_for(distances: torch.Tensor, points: int = 101) -> torch.Tensor:
    """A grid from 0 to past the largest finite distance, so the curve reaches 0 when all samples are broken."""
    finite = distances[torch.isfinite(distances)]
    top = float(finite.max()) * 1.05 if finite.numel() and float(finite.max()) > 0 else 1.0
    return torch.linspace(0, top, points, dtype=torch.float64)


def area_under_curve(eps_grid: torch.Tensor, accuracy: torch.Tensor) -> float:
    """Trapezoidal area under the robust-accuracy curve (in units of ε × accuracy)."""
    return float(torch.trapezoid(accuracy.double(), eps_grid.double()))
