"""Certified minimal adversarial perturbations of small ReLU networks (Tjeng, Xiao & Tedrake, ICLR 2019)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from edgewise.exact.formulation import INF, Bounds, Program, Solution, build, compute_bounds, reachable_region
from edgewise.exact.network import SUPPORTED, Network, checked_network
from edgewise.exact.solvers import SOLVERS, ball_ranges, complete, lp_ranges, relaxed_minimum, solve
from edgewise.validation import (
    check_bool,
    check_choice,
    check_inputs,
    check_like,
    check_logits,
    check_model,
    check_positive,
    describe,
)

NORMS = ("linf", "l1", "l2")
STATUSES = ("optimal", "time_limit", "infeasible")
ORDER = {"linf": math.inf, "l1": 1, "l2": 2}
# The faster solver per norm, measured here (docs/exact.md, "Which solver").
DEFAULT_SOLVER = {"linf": "scip", "l1": "scip", "l2": "bnb"}
# Ray scalings x + (1 + s) δ tried, in order, when the solver's point fails re-verification by a hair.
REPAIR = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
BRACKET = 0.01
"""The widest relative bracket (distance − lower_bound) / distance called "optimal". The margins ±τ are in logit
units: where the logits change little per unit of input, they lie far from the boundary in distance, and the
bracket the solver leaves between them is that wide however closed its gap."""


@dataclass(frozen=True)
class ExactResult:
    """Per sample: the verified adversarial (the input where none), its ‖δ‖ (+inf where none), the certified
    lower bound of the minimal ‖δ‖ of any input the model misclassifies, the status and the seconds spent.

    status "optimal": the solver closed the relative ``gap`` and its point, re-solved on its activation pattern
    with margin +τ, is a verified adversarial, and the bracket [lower_bound, distance] is within ``BRACKET``
    (1%) of the distance (it is the gap plus the O(τ) of that step, wide where the logits are small);
    "infeasible": no adversarial in the searched region (lower_bound is its radius, +inf without ``upper``);
    "time_limit": anything else (the time ran out, the solver's point failed re-verification, or the bracket is
    wider than 1%: a smaller ``tolerance`` narrows it): the bracket [lower_bound, distance] is all that is known.
    """

    adversarial: torch.Tensor
    distance: torch.Tensor
    lower_bound: torch.Tensor
    status: list[str]
    seconds: torch.Tensor
    norm: str


def _check(norm: str, solver: str, time_limit: float, gap: float, tolerance: float, tighten: bool) -> None:
    check_choice("norm", norm, NORMS)
    check_choice("solver", solver, SOLVERS)
    if solver == "highs" and norm == "l2":
        raise ValueError("solver: HiGHS solves no mixed-integer quadratic programs; use 'bnb' or 'scip' for l2")
    if solver == "bnb" and norm != "l2":
        raise ValueError(f"solver: 'bnb' solves the l2 program only; use 'scip' or 'highs' for {norm}")
    check_positive("time_limit", time_limit)
    check_positive("gap", gap, allow_zero=True)
    if gap >= 1:
        # The questions are asked within d (1 − gap): at gap >= 1 a radius <= 0, "certifying" a bound <= 0.
        raise ValueError(f"gap must be in [0, 1), got {gap}")
    check_positive("tolerance", tolerance, allow_zero=True)
    check_bool("tighten", tighten)


def _check_starts(starts: torch.Tensor | None, inputs: torch.Tensor) -> None:
    """``starts``: None or points like ``inputs`` (any floating dtype and device), finite and in [0, 1]."""
    if starts is None:
        return
    check_like("starts", starts, inputs, "inputs")
    if not bool(torch.isfinite(starts).all()) or float(starts.min()) < 0 or float(starts.max()) > 1:
        raise ValueError("starts must be finite and in [0, 1] (points of the input box)")


def _upper(upper: float | torch.Tensor | None, batch: int) -> np.ndarray:
    if upper is None:
        return np.full(batch, math.inf)
    refused = TypeError(f"upper must be None, a number or a ({batch},) tensor of radii, got {describe(upper)}")
    if isinstance(upper, bool):
        raise refused
    try:
        values = torch.as_tensor(upper, dtype=torch.float64).cpu().flatten()
    except (TypeError, ValueError, RuntimeError) as error:
        raise refused from error
    if values.numel() == 1:
        values = values.expand(batch)
    if values.numel() != batch or bool((values < 0).any()) or bool(values.isnan().any()):
        raise ValueError(f"upper must be None, a number or a ({batch},) tensor of radii >= 0, got {upper!r}")
    return values.numpy().copy()


def _is_adversarial(model: nn.Module, candidate: torch.Tensor, label: int, targeted: bool) -> bool:
    with torch.no_grad():
        predicted = int(model(candidate[None]).argmax(1))
    return predicted == label if targeted else predicted != label


def _verified(model: nn.Module, x: torch.Tensor, point: np.ndarray, label: int, targeted: bool,
              norm: str) -> tuple[torch.Tensor, float] | None:
    """The solver's point as the model sees it, nudged outward along δ until the real model agrees."""
    delta = torch.as_tensor(point, dtype=torch.float64, device=x.device).view_as(x) - x.double()
    for scale in REPAIR:
        candidate = (x.double() + (1 + scale) * delta).clamp(0, 1).to(x.dtype)
        if _is_adversarial(model, candidate, label, targeted):
            return candidate, float((candidate.double() - x.double()).flatten().norm(p=ORDER[norm]))
    return None


def _tightening(norm: str, tighten: bool, deadline: float) -> Callable[[Program, np.ndarray, np.ndarray],
                                                                        tuple[np.ndarray, np.ndarray]] | None:
    """The bound tightening: LPs for ℓ∞ and ℓ1; for ℓ2 second-order cone programs, since the LPs can hold only
    the ball's bounding box (on tinymlp-fmnist they took 9-11 s per ball and fixed no ReLU that the intervals
    left undecided). Units not reached by ``deadline`` (``time.perf_counter()``) keep their interval bounds."""
    if not tighten:
        return None
    return partial(ball_ranges if norm == "l2" else lp_ranges, deadline=deadline)


def _from_objective(value: float, norm: str) -> float:
    return math.sqrt(max(value, 0.0)) if norm == "l2" else max(value, 0.0)


def _within(network: Network, flat: np.ndarray, label: int, *, norm: str, radius: float, targeted: bool,
            time_limit: float, solver: str, tolerance: float, tighten: bool) -> tuple[Solution, Bounds]:
    """Is there an adversarial (margin ≥ −τ) within ``radius``? A feasibility program, its bounds computed in
    that ball: "infeasible" certifies ``radius`` as a lower bound; a point is an adversarial inside it. The
    bounds and the solver share ``time_limit``; where the bounds spend it, no solver is started: no point, and
    the relaxation's bound (the solver's own first bound; for ℓ2 a lower bound of Σ (x' − x)²)."""
    deadline = time.perf_counter() + time_limit
    bounds = compute_bounds(network, flat, norm, radius, label=label, targeted=targeted, tolerance=tolerance,
                            lp=_tightening(norm, tighten, deadline))
    if not reachable_region(bounds, targeted=targeted, tolerance=tolerance):
        return Solution("infeasible", None, INF, INF), bounds
    program, _ = build(network, flat, norm, radius, bounds, label=label, targeted=targeted, tolerance=tolerance,
                       feasibility=True)
    remaining = deadline - time.perf_counter()
    if remaining <= 0:
        return Solution("time_limit", None, INF, relaxed_minimum(program)), bounds
    return solve(program, solver=solver, time_limit=remaining, gap=0.0, first=True), bounds


def _relaxed_lower(network: Network, flat: np.ndarray, label: int, *, norm: str, radius: float, bounds: Bounds,
                   targeted: bool, tolerance: float) -> float:
    """A certified lower bound of the minimal ‖δ‖ where the questions ran out of time: the relaxation's minimum
    of the minimization program in the ball of ``radius`` with ``bounds`` (every adversarial inside the ball is
    feasible for it; any outside is at least ``radius`` away)."""
    if not reachable_region(bounds, targeted=targeted, tolerance=tolerance):
        return radius
    program, _ = build(network, flat, norm, radius, bounds, label=label, targeted=targeted, tolerance=tolerance)
    return min(_from_objective(relaxed_minimum(program), norm), radius)


def _polish(network: Network, model: nn.Module, x: torch.Tensor, point: np.ndarray, label: int, *, norm: str,
            radius: float, bounds: Bounds, targeted: bool, tolerance: float,
            time_limit: float) -> tuple[tuple[torch.Tensor, float] | None, float]:
    """On the activation pattern of ``point`` (an LP for ℓ∞ and ℓ1, a QP for ℓ2, solved by HiGHS): the
    closest adversarial with margin +τ, verified (or ``point`` itself where that fails; None where neither is
    adversarial for the real model), and the pattern's minimal distance with margin −τ where that polished point
    is verified (the distance of ``point`` otherwise: a pattern whose margins stay below +τ can hold no
    adversarial near its minimum at −τ, which then says nothing of how far ``point`` is from the closest one)."""
    flat = x.detach().double().cpu().flatten().numpy()
    program, _ = build(network, flat, norm, radius, bounds, label=label, targeted=targeted, tolerance=tolerance)
    full = complete(program, point)
    verified = [v for v in [_verified(model, x, point[: x.numel()], label, targeted, norm)] if v is not None]
    relaxed = float(np.linalg.norm(point - flat, ord=ORDER[norm]))
    if full is not None:
        convex = "bnb" if norm == "l2" else "highs"
        polished = solve(program.fixed(full, 2 * tolerance), solver=convex, time_limit=time_limit, gap=0.0).point
        closest = None if polished is None else _verified(model, x, polished[: x.numel()], label, targeted, norm)
        if closest is not None:
            verified.append(closest)
            pattern = solve(program.fixed(full, 0.0), solver=convex, time_limit=time_limit, gap=0.0)
            relaxed = min(relaxed, _from_objective(pattern.objective, norm))
    return (min(verified, key=lambda v: v[1]) if verified else None), relaxed


def _question(network: Network, model: nn.Module, x: torch.Tensor, label: int, found: tuple[torch.Tensor, float], *,
              norm: str, targeted: bool, time_limit: float, solver: str, gap: float, tolerance: float,
              tighten: bool) -> tuple[tuple[torch.Tensor, float], tuple[torch.Tensor, float, float, str] | None]:
    """From a verified adversarial at distance d, polished on its activation pattern to the pattern's minimum m
    (with margin −τ), ask once "any adversarial (margin ≥ −τ) within m (1 − gap)?": "no" certifies the polished
    point within the gap ("optimal"); "yes" leaves the minimization to decide, from the closest point so far.
    The question is asked in a smaller ball than the minimization (tighter bounds, fewer undecided ReLUs) and,
    for ℓ∞, of a much smaller program (no rows for |x' − x| ≤ t); for ℓ2 it is the minimization's program (its
    ball the quadratic constraint Σ (x' − x)² ≤ r²) stopped at its first point. More questions after a "yes"
    (descending below each point found) are slower than the minimization: on the 10 hardest tinycnn-fmnist
    images at ℓ∞, 60 s each, they certified 2 where one question and then the minimization certify 6
    (docs/exact.md).

    Returns the closest verified adversarial and the sample's result, or None for the result where the
    minimization decides."""
    started = time.perf_counter()
    flat = x.detach().double().cpu().flatten().numpy()
    adversarial, distance = found
    # An attack stops a little above the minimum of its own activation pattern (FMN at 1,000 passes by 0.01-0.4%
    # on tinymlp-pgd-fmnist): polished first, the question is asked below that minimum, where "no" is the likely
    # answer, instead of in the thin shell between the two, where the solver has to find a point. The pattern's
    # program needs no tight bounds: interval arithmetic in the start's ball.
    ball = distance * (1 + 1e-6) + 1e-9
    region = compute_bounds(network, flat, norm, ball, label=label, targeted=targeted, tolerance=tolerance, lp=None)
    closer, reach = _polish(network, model, x, adversarial.detach().double().cpu().flatten().numpy(), label,
                            norm=norm, radius=ball, bounds=region, targeted=targeted, tolerance=tolerance,
                            time_limit=time_limit)
    if closer is not None and closer[1] < distance:
        adversarial, distance = closer
    inner = min(reach, distance) * (1 - gap)
    verdict, bounds = _within(network, flat, label, norm=norm, radius=inner, targeted=targeted,
                              time_limit=time_limit - (time.perf_counter() - started), solver=solver,
                              tolerance=tolerance, tighten=tighten)
    if verdict.status == "infeasible":
        return (adversarial, distance), (adversarial, distance, min(inner, distance), "optimal")
    if verdict.point is None:
        # Out of time. ℓ2's question keeps its objective Σ (x' − x)²: its dual bound is a certificate; ℓ∞'s and
        # ℓ1's feasibility questions have none, and the relaxation of the minimization in that ball gives one.
        lower = (min(_from_objective(verdict.bound, norm), inner) if norm == "l2" else
                 _relaxed_lower(network, flat, label, norm=norm, radius=inner, bounds=bounds, targeted=targeted,
                                tolerance=tolerance))
        return (adversarial, distance), (adversarial, distance, min(lower, distance), "time_limit")
    closer, _ = _polish(network, model, x, verdict.point[: x.numel()], label, norm=norm, radius=inner,
                        bounds=bounds, targeted=targeted, tolerance=tolerance,
                        time_limit=max(time_limit - (time.perf_counter() - started), 1.0))
    if closer is not None and closer[1] < distance:
        adversarial, distance = closer
    return (adversarial, distance), None


def _one(network: Network, model: nn.Module, x: torch.Tensor, label: int, *, norm: str, radius: float,
         targeted: bool, time_limit: float, solver: str, gap: float, tolerance: float, tighten: bool,
         start: torch.Tensor | None) -> tuple[torch.Tensor, float, float, str]:
    if _is_adversarial(model, x, label, targeted):
        return x, 0.0, 0.0, "optimal"  # misclassified as it is: the minimum is 0
    flat = x.detach().double().cpu().flatten().numpy()
    started = time.perf_counter()
    known = None if start is None else start.detach().double().cpu().flatten().numpy()
    found = None if known is None else _verified(model, x, known, label, targeted, norm)
    if found is not None and gap > 0 and found[1] > 0:
        found, result = _question(network, model, x, label, found, norm=norm, targeted=targeted,
                                  time_limit=time_limit, solver=solver, gap=gap, tolerance=tolerance,
                                  tighten=tighten)
        if result is not None:
            return result
        radius, known = found[1], found[0].detach().double().cpu().flatten().numpy()
    # A small slack keeps the attack's own point (at distance exactly `upper`) inside the searched ball.
    ball = radius * (1 + 1e-6) + 1e-9 if math.isfinite(radius) else math.inf
    bounds = compute_bounds(network, flat, norm, ball, label=label, targeted=targeted, tolerance=tolerance,
                            lp=_tightening(norm, tighten, started + time_limit))
    if not reachable_region(bounds, targeted=targeted, tolerance=tolerance):
        return x, math.inf, ball, "infeasible"
    program, _ = build(network, flat, norm, ball, bounds, label=label, targeted=targeted, tolerance=tolerance)
    remaining = time_limit - (time.perf_counter() - started)
    if remaining <= 0:
        # No time left for the solver (it would not stop before its presolve and root): the relaxation's bound.
        lower = min(_from_objective(relaxed_minimum(program), norm), ball)
        return (x, math.inf, lower, "time_limit") if found is None else (*found, min(lower, found[1]), "time_limit")
    solution: Solution = solve(program, solver=solver, time_limit=remaining, gap=gap, start=known)
    if solution.status == "infeasible":
        return x, math.inf, ball, "infeasible"
    lower = _from_objective(solution.bound, norm)
    candidates = []
    if solution.point is not None:
        # The optimum sits on the margin −τ; on its activation pattern the program is convex, and re-solved with
        # margin +τ it gives a point the real model misclassifies, a hair further away.
        remaining = max(time_limit - (time.perf_counter() - started), 1.0)
        repaired = solve(program.fixed(solution.point, 2 * tolerance), solver=solver, time_limit=remaining, gap=gap)
        candidates += [repaired.point, solution.point]
    closest = next((v for c in candidates if c is not None
                    if (v := _verified(model, x, c[: x.numel()], label, targeted, norm)) is not None), None)
    status = solution.status
    if closest is None:
        # The solver's points fail re-verification: the start (verified adversarial), with the bracket it leaves.
        status, closest = "time_limit", found
    if closest is None:
        return x, math.inf, lower, "time_limit"
    adversarial, distance = closest
    return adversarial, distance, min(lower, distance), status


def minimal(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norm: str, time_limit: float,
            upper: float | torch.Tensor | None = None, targeted: bool = False, solver: str | None = None,
            gap: float = 1e-4, tolerance: float = 1e-5, tighten: bool = True,
            starts: torch.Tensor | None = None) -> ExactResult:
    """Per sample, min ‖δ‖_norm s.t. x + δ ∈ [0, 1] and the model misclassifies x + δ, by mixed-integer programming.

    ``model``: an nn.Sequential of Linear, Conv, ReLU, Flatten, MaxPool2d, Normalize, BatchNorm (eval), Dropout.
    ``labels``: true classes, or the targets with ``targeted`` (then the target's logit must be ≥ every other).
    ``upper``: a radius (number or (B,) tensor, e.g. an attack's distances) the search is restricted to: the
    usual way to keep the program small; no adversarial within it is status "infeasible" with lower_bound upper.
    ``time_limit``: seconds per sample (bounds and solve together). ``solver``: "scip", "highs" (ℓ∞ and ℓ1
    only: HiGHS solves no MIQP) or "bnb" (ℓ2 only: edgewise.exact.branch, best-first branch and bound over
    PIQP's convex QP relaxations) for the mixed-integer programs; None: the faster here, ``DEFAULT_SOLVER``.
    HiGHS solves the LPs of the bounds and of ℓ∞/ℓ1 activation patterns, Clarabel the cone programs of ℓ2's
    bounds, PIQP its activation patterns' QPs. ``gap``: relative optimality gap the solver stops at.
    ``tolerance`` (τ, in logits): the program asks for margin ≥ −τ, so the certified bound also covers points
    whose float logits tie or win by less than τ; the returned point is re-verified by the real model, nudged
    along δ if needed. ``tighten``: tighten the interval bounds (eq. 5's big-M constants) by LPs (ℓ2: cone
    programs). ``starts``: known adversarial points (e.g. an attack's output, shaped like ``inputs``), each
    given to the solver as a first incumbent; a sample where the model does not misclassify its start, even
    nudged outward along δ by up to 10⁻³ relative (an attack's point verified in a batch can fail alone by a
    rounding), gets none.
    """
    # An unknown norm gets its error from _check; until then any solver stands in for its default.
    chosen = DEFAULT_SOLVER.get(norm, "scip") if solver is None else solver
    _check(norm, chosen, time_limit, gap, tolerance, tighten)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (an nn.Sequential of {SUPPORTED}), got "
                        f"{type(model).__name__}")
    check_inputs(inputs, labels)
    check_model(model, inputs)
    check_bool("targeted", targeted)
    with torch.no_grad():
        check_logits(model(inputs), labels)
    radii = _upper(upper, len(inputs))
    _check_starts(starts, inputs)
    network = checked_network(model, inputs)
    adversarial = inputs.detach().clone()
    distance = torch.full((len(inputs),), math.inf, dtype=torch.float64)
    lower = torch.zeros(len(inputs), dtype=torch.float64)
    seconds = torch.zeros(len(inputs), dtype=torch.float64)
    status: list[str] = []
    for i in range(len(inputs)):
        started = time.perf_counter()
        adv, dist, low, state = _one(network, model, inputs[i].detach(), int(labels[i]), norm=norm,
                                     radius=float(radii[i]), targeted=targeted, time_limit=time_limit,
                                     solver=chosen, gap=gap, tolerance=tolerance, tighten=tighten,
                                     start=None if starts is None else starts[i])
        adversarial[i], distance[i], lower[i] = adv, dist, low
        status.append("time_limit" if state == "optimal" and dist - low > BRACKET * dist else state)
        seconds[i] = time.perf_counter() - started
    return ExactResult(adversarial, distance, lower, status, seconds, norm)
