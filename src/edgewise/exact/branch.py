"""Branch and bound for the ℓ2 program (an MIQP) over convex QP relaxations.

HiGHS solves convex QPs but no MIQP; SCIP solves the MIQP but holds the ball Σ (x' − x)² only through cutting
planes, which in 784 dimensions close slowly (docs/exact.md: no ℓ2 certificate at 5-10 s per image). Here every
node is the program with its binaries relaxed to [0, 1], some of them fixed by the branching, and the quadratic
objective kept exactly: a QP solver (``solve_node``; edgewise.exact.solvers.relaxation, PIQP) gives the node's
bound. Best first: the open node with the smallest
bound is split next, on a fractional binary (the classes' disjunction first, then the ReLU or max-pooling
indicator whose big-M constant is largest); a node whose relaxation is integral is a point of the program.
A node at or above the incumbent (within the relative ``gap``) or above the radius² of the program's ball is
closed. The smallest open bound is the certified lower bound; an empty queue closes the gap.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgewise.exact.formulation import Program, Solution

# An integer column within this of 0 or 1 in the relaxation's solution counts as integral.
INTEGRAL = 1e-6


@dataclass(order=True)
class _Node:
    bound: float
    order: int
    lower: np.ndarray = field(compare=False)
    upper: np.ndarray = field(compare=False)
    point: np.ndarray = field(compare=False)


# A node's relaxation: its integer columns' bounds -> ("optimal", value, point), ("infeasible", inf, None), or
# ("unsolved", inf, None) where the QP solver gave no answer.
NodeSolver = Callable[[np.ndarray, np.ndarray], tuple[str, float, np.ndarray | None]]


def _priority(program: Program) -> np.ndarray:
    """Per integer column, how much branching on it is expected to move the bound: the classes' indicators first
    (each child is one class's program), then the others by their largest big-M coefficient."""
    integer = np.flatnonzero(program.integer)
    spread = np.asarray(abs(program.matrix[:, integer]).max(axis=0).todense()).ravel()
    return np.where(np.isin(integer, program.margin_binaries), math.inf, spread)


def branch_and_bound(program: Program, solve_node: NodeSolver, *, time_limit: float, gap: float,
                     start: np.ndarray | None = None, first: bool = False) -> Solution:
    """Minimize ``program`` (its integer columns binary, ``center`` set); ``start``: a feasible point of every
    column, the first incumbent. ``first``: stop at the first integral point (a feasibility question, whose
    ball is the program's ``radius``). ``solve_node``: the relaxation of ``program`` with given bounds of its
    integer columns."""
    started = time.perf_counter()
    center = program.center
    if center is None:
        raise ValueError("program: branch_and_bound minimizes the quadratic Σ (x' − center)²; center is None")
    integer = np.flatnonzero(program.integer)
    priority = _priority(program)
    cutoff = program.radius**2 if math.isfinite(program.radius) else math.inf
    best_point, best = None, math.inf
    if start is not None:
        best_point, best = start, float(np.sum((start[: len(center)] - center) ** 2))
    closed = math.inf  # the smallest bound of a node closed by the incumbent: the certificate it leaves
    counter = itertools.count()
    queue: list[_Node] = []

    def visit(lower: np.ndarray, upper: np.ndarray) -> bool:
        """Solve a node's relaxation and queue it, record its integral point, or close it; False if unsolved."""
        nonlocal best_point, best, closed
        status, value, point = solve_node(lower, upper)
        if status == "infeasible" or value > cutoff:
            return True
        if status != "optimal" or point is None:
            return False
        if value >= best * (1 - gap):
            closed = min(closed, value)
            return True
        if (np.abs(point[integer] - np.round(point[integer])) <= INTEGRAL).all():
            objective = float(np.sum((point[: len(center)] - center) ** 2))
            if objective < best:
                best_point, best = point, objective
            return True
        heapq.heappush(queue, _Node(value, next(counter), lower, upper, point))
        return True

    def outcome(status: str, lower: float) -> Solution:
        return Solution(status, best_point, best, min(lower, closed, best))

    if not visit(program.col_lower[integer].copy(), program.col_upper[integer].copy()):
        return outcome("time_limit", 0.0)
    while queue:
        if first and best_point is not None:
            return outcome("time_limit", queue[0].bound)
        if time.perf_counter() - started > time_limit:
            return outcome("time_limit", queue[0].bound)
        node = heapq.heappop(queue)
        if node.bound >= best * (1 - gap):
            closed = min(closed, node.bound)
            continue
        fraction = np.abs(node.point[integer] - np.round(node.point[integer]))
        candidates = np.flatnonzero(fraction > INTEGRAL)
        choice = candidates[np.argmax(priority[candidates] * fraction[candidates])]
        for value in (0.0, 1.0):
            lower, upper = node.lower.copy(), node.upper.copy()
            lower[choice] = upper[choice] = value
            if not visit(lower, upper):
                return outcome("time_limit", node.bound)
    if best_point is None:
        return Solution("infeasible", None, math.inf, math.inf)
    return outcome("optimal", math.inf)
