"""Certified minimal adversarial perturbations of small ReLU networks (Tjeng, Xiao & Tedrake, ICLR 2019)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgewise.exact.formulation import build, compute_bounds, reachable_region
from edgewise.exact.network import Network, check_network, network_from_module
from edgewise.exact.solvers import SOLVERS, Solution, lp_ranges, solve
from edgewise.validation import check_choice, check_inputs, check_logits, check_positive

NORMS = ("linf", "l1", "l2")
STATUSES = ("optimal", "time_limit", "infeasible")
ORDER = {"linf": math.inf, "l1": 1, "l2": 2}
# Ray scalings x + (1 + s) δ tried, in order, when the solver's point fails re-verification by a hair.
REPAIR = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)


@dataclass(frozen=True)
class ExactResult:
    """Per sample: the verified adversarial (the input where none), its ‖δ‖ (+inf where none), the certified
    lower bound of the minimal ‖δ‖ of any input the model misclassifies, the status and the seconds spent.

    status "optimal": the solver closed the relative ``gap`` and its point, re-solved on its activation pattern
    with margin +τ, is a verified adversarial (distance − lower_bound is then the gap plus the O(τ) of that step);
    "infeasible": no adversarial in the searched region (lower_bound is its radius, +inf without ``upper``);
    "time_limit": anything else (the time ran out, or the solver's point failed re-verification): the
    bracket [lower_bound, distance] is all that is known.
    """

    adversarial: torch.Tensor
    distance: torch.Tensor
    lower_bound: torch.Tensor
    status: list[str]
    seconds: torch.Tensor
    norm: str


def _check(norm: str, solver: str, time_limit: float, gap: float, tolerance: float) -> None:
    check_choice("norm", norm, NORMS)
    check_choice("solver", solver, SOLVERS)
    if solver == "highs" and norm == "l2":
        raise ValueError("solver: HiGHS solves no mixed-integer quadratic programs; use solver='scip' for l2")
    check_positive("time_limit", time_limit)
    check_positive("gap", gap, allow_zero=True)
    check_positive("tolerance", tolerance, allow_zero=True)


def _upper(upper: float | torch.Tensor | None, batch: int) -> np.ndarray:
    if upper is None:
        return np.full(batch, math.inf)
    values = torch.as_tensor(upper, dtype=torch.float64).cpu().flatten()
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
    delta = torch.as_tensor(point, dtype=torch.float64).view_as(x) - x.double()
    for scale in REPAIR:
        candidate = (x.double() + (1 + scale) * delta).clamp(0, 1).to(x.dtype)
        if _is_adversarial(model, candidate, label, targeted):
            return candidate, float((candidate.double() - x.double()).flatten().norm(p=ORDER[norm]))
    return None


def _start(model: nn.Module, starts: torch.Tensor | None, i: int, label: int, targeted: bool) -> torch.Tensor | None:
    if starts is None or not _is_adversarial(model, starts[i], label, targeted):
        return None
    return starts[i]


def _from_objective(value: float, norm: str) -> float:
    return math.sqrt(max(value, 0.0)) if norm == "l2" else max(value, 0.0)


def _one(network: Network, model: nn.Module, x: torch.Tensor, label: int, *, norm: str, radius: float,
         targeted: bool, time_limit: float, solver: str, gap: float, tolerance: float, tighten: bool,
         start: torch.Tensor | None) -> tuple[torch.Tensor, float, float, str]:
    if _is_adversarial(model, x, label, targeted):
        return x, 0.0, 0.0, "optimal"  # misclassified as it is: the minimum is 0
    flat = x.detach().double().cpu().flatten().numpy()
    # A small slack keeps the attack's own point (at distance exactly `upper`) inside the searched ball.
    ball = radius * (1 + 1e-6) + 1e-9 if math.isfinite(radius) else math.inf
    started = time.perf_counter()
    bounds = compute_bounds(network, flat, norm, ball, label=label, targeted=targeted, tolerance=tolerance,
                            lp=lp_ranges if tighten else None)
    if not reachable_region(bounds, targeted=targeted, tolerance=tolerance):
        return x, math.inf, ball, "infeasible"
    program, _ = build(network, flat, norm, ball, bounds, label=label, targeted=targeted, tolerance=tolerance)
    remaining = time_limit - (time.perf_counter() - started)
    known = None if start is None else start.detach().double().cpu().flatten().numpy()
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
    found = None
    for candidate in [*candidates, known]:  # the start, verified adversarial, if the solver's points fail
        if candidate is not None and found is None:
            found = _verified(model, x, candidate[: x.numel()], label, targeted, norm)
    if found is None:
        return x, math.inf, lower, "time_limit"
    adversarial, distance = found
    return adversarial, distance, min(lower, distance), solution.status


def minimal(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norm: str, time_limit: float,
            upper: float | torch.Tensor | None = None, targeted: bool = False, solver: str = "scip",
            gap: float = 1e-4, tolerance: float = 1e-5, tighten: bool = True,
            starts: torch.Tensor | None = None) -> ExactResult:
    """Per sample, min ‖δ‖_norm s.t. x + δ ∈ [0, 1] and the model misclassifies x + δ, by mixed-integer programming.

    ``model``: an nn.Sequential of Linear, Conv, ReLU, Flatten, MaxPool2d, Normalize, BatchNorm (eval), Dropout.
    ``labels``: true classes, or the targets with ``targeted`` (then the target's logit must be ≥ every other).
    ``upper``: a radius (number or (B,) tensor, e.g. an attack's distances) the search is restricted to: the
    usual way to keep the program small; no adversarial within it is status "infeasible" with lower_bound upper.
    ``time_limit``: seconds per sample (bounds and solve together). ``solver``: "highs", "scip" or "auto" (HiGHS
    for ℓ∞/ℓ1, SCIP for ℓ2's MIQP). ``gap``: relative optimality gap the solver stops at. ``tolerance`` (τ, in
    logits): the program asks for margin ≥ −τ, so the certified bound also covers points whose float logits tie
    or win by less than τ; the returned point is re-verified by the real model, nudged along δ if needed.
    ``tighten``: LP-tighten the interval bounds (eq. 5's big-M constants). ``starts``: known adversarial
    points (e.g. an attack's output, shaped like ``inputs``), each given to the solver as a first incumbent; a
    sample where the model does not misclassify its start gets none.
    """
    _check(norm, solver, time_limit, gap, tolerance)
    check_inputs(inputs, labels)
    with torch.no_grad():
        check_logits(model(inputs), labels)
    chosen = solver
    radii = _upper(upper, len(inputs))
    if starts is not None and starts.shape != inputs.shape:
        raise ValueError(f"starts must have the shape of inputs {tuple(inputs.shape)}, got {tuple(starts.shape)}")
    network = network_from_module(model, tuple(inputs.shape[1:]))
    check_network(network, model, inputs)
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
                                     start=_start(model, starts, i, int(labels[i]), targeted))
        adversarial[i], distance[i], lower[i] = adv, dist, low
        status.append(state)
        seconds[i] = time.perf_counter() - started
    return ExactResult(adversarial, distance, lower, status, seconds, norm)
