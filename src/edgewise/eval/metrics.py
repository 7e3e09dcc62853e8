"""Metrics of the ALMA paper's protocol (sec. 5): success rate, median distance, robust-accuracy curves, and
AttackBench's (Cinà et al., AAAI 2025): AUREC, local and global optimality.

Conventions: ``distances`` is (N,) with 0 for samples misclassified without attack and ``inf`` where the
attack failed, so that robust accuracy at ε is the fraction of samples whose distance exceeds ε.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def success_rate(success: torch.Tensor) -> float:
    """Fraction of samples for which a verified adversarial was found (clean errors count as found)."""
    return float(success.float().mean())


def median_distance(distances: torch.Tensor) -> float:
    """Median over all samples, failures counted as +inf (worst case), as in DDN sec. 4 / ALMA Table 1; for an
    even count the lower of the two middle values (torch's median; numpy's is their mean)."""
    return float(distances.double().median()) if distances.numel() else float("nan")


def mean_distance(distances: torch.Tensor, success: torch.Tensor) -> float:
    """Mean distance over the successful samples only (nan if none)."""
    chosen = distances[success]
    return float(chosen.double().mean()) if chosen.numel() else float("nan")


# A distance within this relative margin of ε counts as within ε. A budget attack projects δ onto the ε-ball
# exactly, but x + δ is rounded to float32 before the distance is measured again from the returned image: PGD
# at ℓ∞ ε = 0.1 returns perturbations that measure 0.10000002. Without the margin, robust accuracy at the
# attack's own ε would count every such sample as robust.
EPS_TOLERANCE = 1e-5


def robust_accuracy(distances: torch.Tensor, eps: float) -> float:
    """Accuracy under the attack for a budget ``eps``: fraction of samples with distance > eps (up to
    ``EPS_TOLERANCE``)."""
    return float(robust_accuracy_curve(distances, torch.tensor([eps]))[0])


def robust_accuracy_curve(distances: torch.Tensor, eps_grid: torch.Tensor) -> torch.Tensor:
    """Robust accuracy at each budget of ``eps_grid`` (the curves of the ALMA paper's figures)."""
    budgets = eps_grid.double().unsqueeze(1) * (1 + EPS_TOLERANCE)
    return (distances.double().unsqueeze(0) > budgets).double().mean(1)


def eps_grid_for(distances: torch.Tensor, points: int = 101) -> torch.Tensor:
    """A grid from 0 to past the largest finite distance, so the curve reaches 0 when all samples are broken."""
    finite = distances[torch.isfinite(distances)]
    top = float(finite.max()) * 1.05 if finite.numel() and float(finite.max()) > 0 else 1.0
    return torch.linspace(0, top, points, dtype=torch.float64)


def area_under_curve(eps_grid: torch.Tensor, accuracy: torch.Tensor) -> float:
    """Trapezoidal area under the robust-accuracy curve (in units of ε × accuracy)."""
    return float(torch.trapezoid(accuracy.double(), eps_grid.double()))


def paired_ratio(mine: torch.Tensor, theirs: torch.Tensor) -> dict[str, float] | None:
    """Per-sample comparison of two attacks on the same samples (the test that a median cannot give).

    Over the samples where both found an adversarial at a positive distance (clean errors, at 0, and failures
    are left out): the geometric mean of ``mine / theirs`` with its 95% confidence interval (normal
    approximation, mean of the log-ratios ± 1.96 standard errors), and the fractions of those samples where
    ``mine`` is smaller and where it is larger. None with fewer than 2 such samples.
    """
    both = torch.isfinite(mine) & torch.isfinite(theirs) & (mine > 0) & (theirs > 0)
    pairs = int(both.sum())
    if pairs < 2:
        return None
    log_ratio = (mine[both].double() / theirs[both].double()).log()
    mean, half_width = float(log_ratio.mean()), 1.96 * float(log_ratio.std()) / pairs ** 0.5
    return {"pairs": pairs, "geometric_mean_ratio": math.exp(mean), "ci95_low": math.exp(mean - half_width),
            "ci95_high": math.exp(mean + half_width), "smaller": float((mine[both] < theirs[both]).double().mean()),
            "larger": float((mine[both] > theirs[both]).double().mean())}


def format_ratio(ratio: dict[str, float] | None, missing: str = "–") -> str:
    """A :func:`paired_ratio` as its tables show it, "1.0032 [1.0019, 1.0046]" (the geometric mean and its 95%
    interval); ``missing`` where there is none."""
    if ratio is None:
        return missing
    return f"{ratio['geometric_mean_ratio']:.4f} [{ratio['ci95_low']:.4f}, {ratio['ci95_high']:.4f}]"


def aurec(distances: torch.Tensor, eps0: float) -> float:
    """Area under the robustness evaluation curve on [0, ``eps0``] (AttackBench, Cinà et al. 2025, eq. 4).

    ρ(ε), the fraction of samples whose distance exceeds ε, is a right-continuous step function that drops by 1/n
    at each distance, so the integral is an exact sum of rectangles (a trapezoid rule would bias it). Distances
    above ``eps0`` and failures (inf) do not lower the curve inside the window but stay in n.
    """
    ordered = distances.double().sort().values
    inside = ordered[torch.isfinite(ordered) & (ordered <= eps0)]
    drops = torch.arange(1, len(inside) + 1, dtype=torch.float64) / len(distances)
    heights = torch.cat([ordered.new_ones(1), 1 - drops])
    edges = torch.cat([ordered.new_zeros(1), inside, ordered.new_full((1,), eps0)])
    return float((heights * edges.diff()).sum())


def reference_distances(distances: Sequence[torch.Tensor]) -> torch.Tensor:
    """The reference attack a* of AttackBench: per sample, the smallest distance any attack found."""
    return torch.stack([d.double() for d in distances]).min(0).values


def local_optimality(distances: torch.Tensor, reference: torch.Tensor, *, clean_accuracy: float) -> float:
    """AttackBench's local optimality (eq. 5) of an attack against the reference a* on one model:

        LO = (acc · ε₀ − AUREC_attack) / (acc · ε₀ − AUREC_ref),   ε₀ = the largest finite reference distance,

    both areas on [0, ε₀], clipped to [0, 1] as attackbenchlib 2.0.2 does. 1: the attack's robust-accuracy curve
    is the reference's; 0: it never lowers the model's accuracy below ``clean_accuracy``. NaN when the
    reference breaks no sample or has no spread (acc · ε₀ ≤ AUREC_ref).
    """
    if distances.shape != reference.shape:
        raise ValueError(f"distances and reference must have the same shape, got {tuple(distances.shape)} "
                         f"and {tuple(reference.shape)}")
    finite = reference[torch.isfinite(reference)]
    if not finite.numel():
        return float("nan")
    eps0 = float(finite.double().max())
    denominator = clean_accuracy * eps0 - aurec(reference, eps0)
    if denominator <= 0:
        return float("nan")
    return min(max((clean_accuracy * eps0 - aurec(distances, eps0)) / denominator, 0.0), 1.0)


def global_optimality(local: Sequence[float]) -> float:
    """AttackBench's global optimality: the mean of an attack's local optimality over the models.

    NaN when a model's LO is NaN (a degenerate reference), as attackbenchlib 2.0.2's mean gives.
    """
    if not local:
        raise ValueError("local must hold the local optimality of at least one model, got none")
    return sum(local) / len(local)
