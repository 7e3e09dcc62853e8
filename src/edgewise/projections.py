"""Projections: the probability simplex, the box [0, 1] intersected with an ℓ0/ℓ1/ℓ2/ℓ∞ ball (Euclidean), and
the ℓ1/ℓ2/ℓ∞ projection onto a hyperplane intersected with the box (FAB's step, :func:`project_hyperplane`).

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


HYPERPLANE_NORMS = ("l1", "l2", "linf")


def project_hyperplane(points: torch.Tensor, normal: torch.Tensor, offset: torch.Tensor, *,
                       norm: str) -> torch.Tensor:
    """ℓp projection of ``points`` onto the hyperplane intersected with the box, per sample:

        z* = argmin_z ‖z − t‖p  subject to  ⟨w, z⟩ + b = 0,  0 ≤ z ≤ 1,     t = points, w = normal, b = offset

    (Croce & Hein, *Minimally distorted adversarial examples with a fast adaptive boundary attack*, ICML 2020,
    arXiv:1907.02044: the projection proj_p(t, π, C) of FAB's step, onto the hyperplane itself from either side as
    the authors' code does). With c = ⟨w, t⟩ + b, coordinate i moves only in the direction dᵢ = −sign(c) sign(wᵢ)
    that brings ⟨w, z⟩ towards −b, by at most its room mᵢ to the box face in that direction, and lowers |c| by
    |wᵢ| times its move. Then (O(d log d), one sort):

    - ℓ1: a linear program whose cost per unit of |c| is 1/|wᵢ|: fill the coordinates in decreasing |wᵢ|, each up
      to its room, until |c| is reached (only the last one moves partially);
    - ℓ∞: every coordinate moves min(ρ, mᵢ), ρ the root of Σᵢ |wᵢ| min(ρ, mᵢ) = |c|;
    - ℓ2: the KKT point moves coordinate i by min(λ|wᵢ|, mᵢ) (the Euclidean step clipped to the box), λ the root
      of Σᵢ wᵢ² min(λ, mᵢ/|wᵢ|) = |c|.

    The two roots are of a piecewise-linear nondecreasing function, found exactly between its sorted breakpoints.
    Where the hyperplane misses the box (the problem is infeasible: even every coordinate at its face leaves
    |c| > 0), every coordinate with wᵢ ≠ 0 goes to its face: the point of the box with the smallest |⟨w, z⟩ + b|,
    what the authors' implementation returns. Coordinates with wᵢ = 0 never move.

    Args:
        points: (B, ...) the points t in [0, 1].
        normal: (B, ...) w, the shape of ``points``.
        offset: (B,) b.
        norm: "l1", "l2" or "linf" (p).

    Returns:
        z* with the shape and dtype of ``points``.
    """
    check_choice("norm", norm, HYPERPLANE_NORMS)
    check_batch("points", points)
    if not isinstance(normal, torch.Tensor) or normal.shape != points.shape:
        raise ValueError(f"normal must be a tensor of the shape of points {tuple(points.shape)}, got "
                         f"{describe(normal)}")
    if not isinstance(offset, torch.Tensor) or offset.shape != points.shape[:1]:
        raise ValueError(f"offset must be a tensor of shape ({points.shape[0]},), got {describe(offset)}")
    t = points.flatten(1)
    w = normal.flatten(1).to(t.dtype)
    value = (w * t).sum(1, keepdim=True) + offset.to(t.dtype).unsqueeze(1)
    direction = -torch.sign(value) * torch.sign(w)             # 0 where wᵢ = 0 or c = 0: no move
    room = torch.where(direction < 0, t, 1 - t).clamp_min(0)   # mᵢ, the distance to the face it moves towards
    slope = w.abs()
    target = value.abs()
    if norm == "l1":
        move = _fill_greedily(slope, room, target)
    elif norm == "linf":
        move = torch.minimum(_breakpoint_root(slope, room, target), room)
    else:
        ratio = torch.where(slope > 0, room / torch.where(slope > 0, slope, 1), 0)
        move = torch.minimum(_breakpoint_root(slope.square(), ratio, target) * slope, room)
    return (t + direction * move).clamp(0, 1).view_as(points)


def _breakpoint_root(weight: torch.Tensor, breakpoint: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per row, the smallest λ ≥ 0 with F(λ) = Σᵢ aᵢ min(λ, uᵢ) = c (a = weight ≥ 0, u = breakpoint ≥ 0, c =
    target ≥ 0, (B, 1)); max u where F never reaches c. With u sorted, F(u₍ₖ₎) = Σ_{j≤k} a₍ⱼ₎u₍ⱼ₎ + u₍ₖ₎ Σ_{j>k} a₍ⱼ₎
    and F is linear between breakpoints: on the segment after the k breakpoints it has passed,
    F(λ) = Σ_{j<k} a₍ⱼ₎u₍ⱼ₎ + λ Σ_{j≥k} a₍ⱼ₎."""
    sorted_u, order = breakpoint.sort(1)
    sorted_a = weight.gather(1, order)
    before = (sorted_a * sorted_u).cumsum(1)
    after = sorted_a.sum(1, keepdim=True) - sorted_a.cumsum(1)
    passed = (before + sorted_u * after < target).sum(1, keepdim=True)   # breakpoints where F is still below c
    index = (passed - 1).clamp_min(0)
    fixed = torch.where(passed > 0, before.gather(1, index), 0)
    slope = torch.where(passed > 0, after.gather(1, index), sorted_a.sum(1, keepdim=True))
    highest = sorted_u[:, -1:]
    root = (target - fixed) / torch.where(slope > 0, slope, 1)
    lowest = torch.where(passed > 0, sorted_u.gather(1, index), 0)
    # Rounding can put the root just outside its segment; infeasible rows (all passed) take every coordinate's room.
    root = torch.minimum(torch.maximum(root, lowest), highest)
    return torch.where((passed == breakpoint.shape[1]) | (slope <= 0), highest, root)


def _fill_greedily(slope: torch.Tensor, room: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ℓ1: per row, the moves (≤ room) of least Σ move with Σ slopeᵢ moveᵢ = target, filling the coordinates in
    decreasing slope (ties in position order); every coordinate at its room where the target is out of reach."""
    order = slope.argsort(dim=1, descending=True, stable=True)
    sorted_slope, sorted_room = slope.gather(1, order), room.gather(1, order)
    capacity = (sorted_slope * sorted_room).cumsum(1)
    full = (capacity < target).sum(1, keepdim=True)            # the leading coordinates that move all their room
    position = torch.arange(slope.shape[1], device=slope.device).unsqueeze(0)
    index = full.clamp_max(slope.shape[1] - 1)
    reached = torch.where(full > 0, capacity.gather(1, (full - 1).clamp_min(0)), 0)
    rest = (target - reached) / sorted_slope.gather(1, index).clamp_min(torch.finfo(slope.dtype).tiny)
    partial = torch.minimum(rest, sorted_room.gather(1, index))
    sorted_move = torch.where(position < full, sorted_room, torch.where(position == full, partial, 0))
    return torch.empty_like(sorted_move).scatter_(1, order, sorted_move)
