"""Euclidean projections: the probability simplex, and the box [0, 1] intersected with an ℓ0/ℓ1/ℓ2/ℓ∞ ball.

``project(delta, x, norm=, eps=)`` solves, for every sample of the batch,

    δ* = argmin_δ ½‖δ − a‖₂²  subject to  ‖δ‖p ≤ ε,  č ≤ δ ≤ ĉ,   a = delta, č = −x, ĉ = 1 − x,

so that x + δ* ∈ [0, 1]. Proposition 1 of Wang et al., *Adversarial Attack Generation Empowered by Min-Max
Optimization* (NeurIPS 2021, supplement A) gives the closed forms used here:

- ℓ∞ (separable): δ* = clip(a, max(č, −ε), min(ĉ, ε)).
- ℓ2 (eq. 15): δ* = clip(a) if ‖clip(a)‖₂ ≤ ε, else clip(a / (λ₂ + 1)) with λ₂ ∈ (0, ‖a‖₂/ε − 1] the root of
  ‖clip(a / (λ₂ + 1))‖₂² = ε².
- ℓ1 (eq. 14): δ* = clip(a) if ‖clip(a)‖₁ ≤ ε, else clip(sign(a) max(|a| − λ₁, 0)) with λ₁ ∈ (0, max|a| − ε/d]
  the root of ‖clip(sign(a) max(|a| − λ₁, 0))‖₁ = ε. (The supplement defines sign(x) = 0 for x < 0, a typo: it
  is −1, the ordinary sign of the soft-thresholding operator.)
- ℓ0 (eq. 16): keep clip(aᵢ) on the ε coordinates of largest ηᵢ, zero elsewhere, where ηᵢ² = aᵢ² − (aᵢ −
  clip(aᵢ))² is what keeping coordinate i saves in squared distance.

Both roots are found by bisection on the paper's brackets, vectorized over the batch, down to the dtype's
resolution; the feasible end of the final bracket is returned, so the result never leaves the ball.
The box contains 0 (x ∈ [0, 1]), which is what makes "clip the unconstrained Lagrangian minimizer" exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from edgewise.validation import check_batch, check_choice, describe

NORMS = ("l0", "l1", "l2", "linf")


def simplex(w: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``w`` (..., K) onto the probability simplex {w ≥ 0, Σ w = 1}.

    Sort-based algorithm (Held, Wolfe & Crowder 1974; Duchi et al. 2008): with u sorted in decreasing order,
    ρ = max{j : u_j − (Σ_{i≤j} u_i − 1)/j > 0}, θ = (Σ_{i≤ρ} u_i − 1)/ρ and w* = max(w − θ, 0).
    """
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.dim() < 1 or w.shape[-1] == 0:
        raise TypeError(f"w must be a floating-point tensor (..., K) with K >= 1, got {describe(w)}")
    u = w.sort(dim=-1, descending=True).values
    cumulative = u.cumsum(-1) - 1
    j = torch.arange(1, w.shape[-1] + 1, dtype=w.dtype, device=w.device)
    rho = ((u - cumulative / j) > 0).sum(-1, keepdim=True)  # >= 1: the first entry always qualifies
    theta = cumulative.gather(-1, rho - 1) / rho.to(w.dtype)
    return (w - theta).clamp_min(0)


def project(delta: torch.Tensor, x: torch.Tensor, *, norm: str, eps: float | torch.Tensor) -> torch.Tensor:
    """Projection of ``delta`` onto {δ : ‖δ‖p ≤ ε, x + δ ∈ [0, 1]}, per sample (Proposition 1, supplement A).

    Args:
        delta: (B, ...) the point a to project (a perturbation).
        x: (B, ...) the clean inputs in [0, 1]; the box is č = −x ≤ δ ≤ ĉ = 1 − x.
        norm: "l0", "l1", "l2" or "linf" (p).
        eps: ε, a number or a (B,) tensor (on any device), >= 0; for "l0" the number of coordinates allowed to change
            (rounded down).

    Returns:
        δ* with the shape and dtype of ``delta``.
    """
    check_batch("delta", delta)
    if not isinstance(x, torch.Tensor) or x.shape != delta.shape:
        raise ValueError(f"x must be a tensor of the shape of delta {tuple(delta.shape)}, got {describe(x)}")
    return project_box(delta, -x.to(delta.dtype), 1 - x.to(delta.dtype), norm=norm, eps=eps)


def project_box(delta: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, *, norm: str,
                eps: float | torch.Tensor) -> torch.Tensor:
    """Projection of ``delta`` onto {δ : ‖δ‖p ≤ ε, lower ≤ δ ≤ upper}; the box must contain 0 (not checked).

    ``project`` is this with lower = −x, upper = 1 − x; a perturbation shared by several inputs (universal
    attacks) uses lower = −1, upper = 1 and clips each x + δ to [0, 1] afterwards.
    """
    check_choice("norm", norm, NORMS)
    check_batch("delta", delta)
    radius = _radius(eps, delta)
    a = delta.flatten(1)
    lower, upper = torch.broadcast_to(lower, delta.shape).flatten(1), torch.broadcast_to(upper, delta.shape).flatten(1)
    solvers: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
        "l0": _l0, "l1": _l1, "l2": _l2, "linf": _linf,
    }
    return solvers[norm](a, lower, upper, radius).view_as(delta)


def _radius(eps: float | torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """ε as a (B, 1) tensor of delta's dtype and device."""
    batch = delta.shape[0]
    if isinstance(eps, torch.Tensor):
        if eps.shape not in ((), (batch,)):
            raise ValueError(f"eps must be a number or a tensor of shape ({batch},), got {tuple(eps.shape)}")
        if not bool(torch.isfinite(eps).all()) or bool((eps < 0).any()):
            raise ValueError(f"eps must be finite and >= 0, got min {float(eps.min()):.4g}")
        return eps.to(device=delta.device, dtype=delta.dtype).expand(batch).unsqueeze(1)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a number or a tensor, got {type(eps).__name__}")
    if not math.isfinite(eps) or eps < 0:  # checked in Python: no device sync for a number
        raise ValueError(f"eps must be finite and >= 0, got {eps}")
    return torch.full((batch, 1), float(eps), dtype=delta.dtype, device=delta.device)


def _bisection_steps(dtype: torch.dtype) -> int:
    """Halvings that shrink a bracket below the dtype's relative resolution (float32: 27, float64: 56)."""
    return round(-math.log2(torch.finfo(dtype).eps)) + 4


def _linf(a: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return torch.minimum(torch.maximum(a, torch.maximum(lower, -eps)), torch.minimum(upper, eps))


def _l2(a: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    # Bisection on λ₂ ∈ [0, ‖a‖₂/ε − 1] (eq. 15), carried out on t = 1/(λ₂ + 1) ∈ [ε/‖a‖₂, 1] (no division by
    # ε = 0). g(t) = ‖clip(t a)‖₂² is nondecreasing in t; t_low stays feasible (g ≤ ε²), t_high infeasible.
    def squared(t: torch.Tensor) -> torch.Tensor:
        return (t * a).clamp(lower, upper).square().sum(1, keepdim=True)

    clipped = a.clamp(lower, upper)
    inside = clipped.square().sum(1, keepdim=True) <= eps.square()
    norm = a.norm(dim=1, keepdim=True)
    t_low = torch.where(inside, 1, eps / torch.where(inside, 1, norm)).clamp_max(1)
    t_high = torch.ones_like(t_low)
    for _ in range(_bisection_steps(a.dtype)):
        middle = (t_low + t_high) / 2
        feasible = squared(middle) <= eps.square()
        t_low, t_high = torch.where(feasible, middle, t_low), torch.where(feasible, t_high, middle)
    return torch.where(inside, clipped, (t_low * a).clamp(lower, upper))


def _l1(a: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    # Soft-thresholding clipped to the box: |δᵢ(λ)| = min(max(|aᵢ| − λ, 0), bᵢ), bᵢ = ĉᵢ if aᵢ ≥ 0 else −čᵢ.
    magnitude = a.abs()
    bound = torch.where(a >= 0, upper, -lower)

    def shrink(lam: torch.Tensor) -> torch.Tensor:
        return torch.minimum((magnitude - lam).clamp_min(0), bound)

    clipped = a.clamp(lower, upper)
    inside = clipped.abs().sum(1, keepdim=True) <= eps
    # Bracket of eq. 14: g(0) > ε (outside) and g(max|a| − ε/d) ≤ ε; λ_high stays feasible.
    lam_low = torch.zeros_like(eps)
    lam_high = (magnitude.amax(1, keepdim=True) - eps / a.shape[1]).clamp_min(0)
    for _ in range(_bisection_steps(a.dtype)):
        middle = (lam_low + lam_high) / 2
        feasible = shrink(middle).sum(1, keepdim=True) <= eps
        lam_low, lam_high = torch.where(feasible, lam_low, middle), torch.where(feasible, middle, lam_high)
    return torch.where(inside, clipped, torch.where(a >= 0, 1, -1) * shrink(lam_high))


def _l0(a: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    # Eq. 16/27: keeping coordinate i as clip(aᵢ) instead of 0 lowers ‖δ − a‖² by ηᵢ² = aᵢ² − (aᵢ − clip(aᵢ))²
    # = clip(aᵢ)(2aᵢ − clip(aᵢ)); keep the ⌊ε⌋ largest (ties broken by position, so exactly ⌊ε⌋ are kept).
    clipped = a.clamp(lower, upper)
    gain = clipped * (2 * a - clipped)
    order = gain.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(a.shape[1], device=a.device).expand_as(order))
    return torch.where(ranks < eps.floor(), clipped, 0)
