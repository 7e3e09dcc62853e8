"""The solvers from PyPI behind edgewise.exact: HiGHS (``highspy``: LPs, MILPs and the convex QPs of ℓ2 on one
activation pattern), PIQP (``piqp``: the QPs of edgewise.exact.branch, solver "bnb", the ℓ2 MIQP by branch and
bound) and SCIP (``pyscipopt``: MILPs and the ℓ2 MIQP, its quadratic objective as a convex quadratic constraint
t ≥ Σ (x' − x)²).

docs/exact.md records which one is faster here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import sparse

from edgewise.exact.branch import NodeSolver, branch_and_bound
from edgewise.exact.formulation import INF, LP_SLACK, Program, Solution

SOLVERS = ("highs", "scip", "bnb")


def _linear_part(program: Program) -> tuple[np.ndarray, float]:
    """The linear cost and the constant of the objective with its quadratic expanded: Σ (v_i − c_i)² =
    ½ vᵀ (2 I) v − 2 c·v + Σ c_i² over the first D columns (without ``center``: the cost and 0)."""
    cost = program.cost.copy()
    if program.center is None:
        return cost, 0.0
    cost[: len(program.center)] -= 2 * program.center
    return cost, float(program.center @ program.center)


def _row_extremes(weights: sparse.csr_matrix, cols: np.ndarray, width: int,
                  minimum: Callable[[np.ndarray], float | None], deadline: float) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each row of ``weights`` (over ``cols``, -1 = constant 0), ``minimum(cost)`` giving the
    minimum of cost·v over a program's ``width`` columns (None where not solved: that end stays infinite).
    No program is started after ``deadline`` (a ``time.perf_counter()`` value): the rows left keep infinite
    ends, i.e. the caller's interval bounds."""
    active = np.flatnonzero(cols >= 0)
    weights = weights[:, active].tocsr()
    low, high = np.full(weights.shape[0], -INF), np.full(weights.shape[0], INF)
    for i in range(weights.shape[0]):
        row = weights[i].tocoo()
        for sign, out in ((1.0, low), (-1.0, high)):
            if time.perf_counter() > deadline:
                return low, high
            cost = np.zeros(width)
            cost[cols[active][row.col]] = sign * row.data
            value = minimum(cost)
            if value is not None:
                out[i] = sign * value
    return low, high


def _highs(program: Program, *, relax: bool) -> Any:
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    lp = highspy.HighsLp()
    lp.num_col_ = len(program.col_lower)
    lp.num_row_ = len(program.row_lower)
    cost, offset = _linear_part(program)
    if program.center is not None:
        lp.offset_ = offset  # a convex QP (no integers)
    lp.col_cost_ = cost
    lp.col_lower_ = np.where(np.isfinite(program.col_lower), program.col_lower, -highspy.kHighsInf)
    lp.col_upper_ = np.where(np.isfinite(program.col_upper), program.col_upper, highspy.kHighsInf)
    lp.row_lower_ = np.where(np.isfinite(program.row_lower), program.row_lower, -highspy.kHighsInf)
    lp.row_upper_ = np.where(np.isfinite(program.row_upper), program.row_upper, highspy.kHighsInf)
    matrix = sparse.csc_matrix(program.matrix)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    if not relax and program.integer.any():
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                           for i in program.integer]
    h.passModel(lp)
    if program.center is not None:
        hessian = highspy.HighsHessian()
        hessian.dim_ = lp.num_col_
        hessian.format_ = highspy.HessianFormat.kTriangular
        size = len(program.center)
        hessian.start_ = np.r_[np.arange(size + 1), np.full(lp.num_col_ - size, size)].astype(np.int32)
        hessian.index_ = np.arange(size, dtype=np.int32)
        hessian.value_ = np.full(size, 2.0)
        h.passHessian(hessian)
    return h


def lp_ranges(program: Program, cols: np.ndarray, weights: sparse.csr_matrix, *,
              deadline: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each row of ``weights`` (over ``cols``, -1 = constant 0) on the LP relaxation (HiGHS);
    rows not reached by ``deadline`` (``time.perf_counter()``) keep infinite ends."""
    import highspy

    h = _highs(program, relax=True)
    # Only the cost changes from one LP to the next: without presolve, primal simplex starts from the previous
    # optimal basis, still primal feasible (about 4 times faster than the default on the ℓ1 programs here).
    h.setOptionValue("presolve", "off")
    h.setOptionValue("simplex_strategy", 4)
    n = len(program.col_lower)
    everything = np.arange(n, dtype=np.int32)

    def minimum(cost: np.ndarray) -> float | None:
        h.changeColsCost(n, everything, cost)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return float(h.getInfo().objective_function_value)

    return _row_extremes(weights, cols, n, minimum, deadline)


def ball_ranges(program: Program, cols: np.ndarray, weights: sparse.csr_matrix, *,
                deadline: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each row of ``weights`` (over ``cols``, -1 = constant 0) on the LP relaxation of
    ``program`` intersected with its ℓ2 ball ‖x' − center‖₂ ≤ radius: second-order cone programs (Clarabel, an
    interior-point conic solver, one problem whose cost is updated row by row). The LPs of ``lp_ranges`` can
    hold only the ball's bounding box, which fixes no ReLU; the cone halves the undecided second-layer ReLUs of
    tinymlp-fmnist in the attack's ball (docs/exact.md). Without a ball: ``lp_ranges``. A row whose program is
    not solved, or not reached by ``deadline``, keeps (-inf, inf), i.e. its interval bounds; values are the
    smaller of the primal and dual objectives, lowered by a relative 10⁻⁶, so that they stay bounds."""
    import clarabel

    center = program.center
    if center is None or not math.isfinite(program.radius):
        return lp_ranges(replace(program, center=None), cols, weights, deadline=deadline)  # no ball: the LP's
    width, size = len(program.col_lower), len(center)
    matrix = program.matrix.tocsr()
    equal = program.row_lower == program.row_upper
    above, below = ~equal & np.isfinite(program.row_upper), ~equal & np.isfinite(program.row_lower)
    identity = sparse.eye(width, format="csr")
    finite_upper, finite_lower = np.isfinite(program.col_upper), np.isfinite(program.col_lower)
    # Clarabel's form: A v + s = b, s in the cones; the ball is (radius, center − x') in the second-order cone.
    cone = sparse.vstack([sparse.csr_matrix((1, width)), identity[:size]])
    inequalities = [matrix[above], -matrix[below], identity[finite_upper], -identity[finite_lower]]
    constraints = sparse.vstack([matrix[equal], *inequalities, cone]).tocsc()
    rhs = np.concatenate([program.row_upper[equal], program.row_upper[above], -program.row_lower[below],
                          program.col_upper[finite_upper], -program.col_lower[finite_lower],
                          [program.radius], center])
    cones = [clarabel.ZeroConeT(int(equal.sum())), clarabel.NonnegativeConeT(sum(m.shape[0] for m in inequalities)),
             clarabel.SecondOrderConeT(size + 1)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.presolve_enable = False  # keeps the problem as given, so that its cost can be updated
    solver = clarabel.DefaultSolver(sparse.csc_matrix((width, width)), np.zeros(width), constraints, rhs, cones,
                                    settings)

    def minimum(cost: np.ndarray) -> float | None:
        solver.update(q=cost)
        solution = solver.solve()
        if str(solution.status) != "Solved":
            return None
        value = min(solution.obj_val, solution.obj_val_dual)
        return float(value - LP_SLACK * (1 + abs(value)))

    return _row_extremes(weights, cols, width, minimum, deadline)


def relaxation(program: Program) -> NodeSolver:
    """The convex QP relaxation of the ℓ2 ``program`` (its binaries in [0, 1]) as a function of its integer
    columns' bounds, solved by PIQP (a proximal interior-point QP solver; HiGHS's active-set QP solver took
    0.6-1.4 s per node on tinymlp-fmnist's programs, PIQP 15-30 ms, same optima). The node's value is the smaller
    of PIQP's primal and dual objectives, lowered by a relative 10⁻⁶ (its tolerances are 10⁻⁸), so that it
    stays a lower bound."""
    import piqp

    center = program.center
    assert center is not None
    size, width = len(center), len(program.col_lower)
    hessian = sparse.diags(np.r_[np.full(size, 2.0), np.zeros(width - size)]).tocsc()
    linear, offset = _linear_part(program)
    equal = program.row_lower == program.row_upper
    matrix = program.matrix.tocsr()
    solver = piqp.SparseSolver()
    solver.settings.verbose = False
    integer = np.flatnonzero(program.integer)
    lower, upper = program.col_lower.copy(), program.col_upper.copy()
    solver.setup(hessian, linear, matrix[equal].tocsc(), program.row_upper[equal], matrix[~equal].tocsc(),
                 program.row_lower[~equal], program.row_upper[~equal], lower, upper)

    def solve_node(node_lower: np.ndarray, node_upper: np.ndarray) -> tuple[str, float, np.ndarray | None]:
        lower[integer], upper[integer] = node_lower, node_upper
        solver.update(x_l=lower, x_u=upper)
        status = solver.solve()
        if status == piqp.PIQP_PRIMAL_INFEASIBLE:
            return "infeasible", INF, None
        if status != piqp.PIQP_SOLVED:
            return "unsolved", INF, None
        info = solver.result.info
        value = min(info.primal_obj, info.dual_obj) + offset
        return "optimal", value - LP_SLACK * (1 + abs(value)), np.array(solver.result.x)

    return solve_node


def relaxed_minimum(program: Program) -> float:
    """A lower bound of ``program``'s minimum (squared for ℓ2): the optimum of its relaxation with the binaries in
    [0, 1] (an LP by HiGHS for ℓ∞ and ℓ1; for ℓ2 PIQP's QP, without the ball, which only lowers it), lowered by
    the relative 10⁻⁶ slack; INF where the relaxation is infeasible, 0 where it is not solved."""
    import highspy

    if program.center is not None:
        integer = program.integer
        status, value, _ = relaxation(program)(program.col_lower[integer], program.col_upper[integer])
        return value if status != "unsolved" else 0.0
    h = _highs(program, relax=True)
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return INF
    if status != highspy.HighsModelStatus.kOptimal:
        return 0.0
    value = float(h.getInfo().objective_function_value)
    return max(value - LP_SLACK * (1 + abs(value)), 0.0)


def solve(program: Program, *, solver: str, time_limit: float, gap: float, start: np.ndarray | None = None,
          first: bool = False) -> Solution:
    """Solve ``program``; ``start``: values of its first columns (the perturbed input x') of a known feasible
    point, completed to every column and handed to the solver as its first incumbent. ``first``: stop at the
    first feasible point (a feasibility question whose program keeps an objective: ℓ2's Σ (x' − x)²)."""
    full = None if start is None else complete(program, start)
    if solver == "bnb":
        if program.center is None:
            raise ValueError("solver: 'bnb' solves the l2 program only; use 'scip' or 'highs' for linf and l1")
        if not program.integer.any():
            status, value, point = relaxation(program)(np.zeros(0), np.zeros(0))
            return Solution("time_limit" if status == "unsolved" else status, point, value, value)
        return branch_and_bound(program, relaxation(program), time_limit=time_limit, gap=gap, start=full,
                                first=first)
    if solver == "highs":
        return _solve_highs(program, time_limit=time_limit, gap=gap, start=full, first=first)
    return _solve_scip(program, time_limit=time_limit, gap=gap, start=full, first=first)


def complete(program: Program, start: np.ndarray) -> np.ndarray | None:
    """Every column's value at the input ``start``: the program with x' fixed there, where bound propagation
    decides every binary (HiGHS); None when ``start`` is outside the program's input bounds or not feasible."""
    import highspy

    size = len(start)
    lower, upper = program.col_lower.copy(), program.col_upper.copy()
    if (start < lower[:size] - 1e-9).any() or (start > upper[:size] + 1e-9).any():
        return None
    lower[:size] = upper[:size] = np.clip(start, lower[:size], upper[:size])
    h = _highs(replace(program, col_lower=lower, col_upper=upper, center=None), relax=False)
    h.setOptionValue("time_limit", 5.0)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.asarray(h.getSolution().col_value)


def _solve_highs(program: Program, *, time_limit: float, gap: float, start: np.ndarray | None,
                 first: bool) -> Solution:
    import highspy

    if program.center is not None and program.integer.any():
        raise ValueError("solver: HiGHS solves no mixed-integer quadratic programs; use 'bnb' or 'scip' for l2")
    h = _highs(program, relax=False)
    h.setOptionValue("time_limit", max(time_limit, 1e-3))
    h.setOptionValue("mip_rel_gap", gap)
    if first:
        h.setOptionValue("mip_max_improving_sols", 1)
    if start is not None:
        h.setSolution(len(start), np.arange(len(start), dtype=np.int32), start)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    if status == highspy.HighsModelStatus.kInfeasible:
        return Solution("infeasible", None, INF, INF)
    has_point = info.primal_solution_status == 2
    point = np.asarray(h.getSolution().col_value) if has_point else None
    objective = info.objective_function_value if has_point else INF
    optimal = status == highspy.HighsModelStatus.kOptimal
    bound = info.mip_dual_bound if program.integer.any() else objective
    return Solution("optimal" if optimal else "time_limit", point, objective,
                    bound if math.isfinite(bound) else 0.0)


def _solve_scip(program: Program, *, time_limit: float, gap: float, start: np.ndarray | None,
                first: bool) -> Solution:
    from pyscipopt import Model, quicksum
    from pyscipopt.scip import ExprCons

    model = Model()
    model.hideOutput()
    model.setParam("limits/time", max(time_limit, 1e-3))
    model.setParam("limits/gap", gap)
    model.setParam("parallel/maxnthreads", 1)
    if first:
        model.setParam("limits/solutions", 1)
    variables = [
        model.addVar(lb=lo if math.isfinite(lo) else None, ub=hi if math.isfinite(hi) else None,
                     vtype="B" if integer and lo >= 0 and hi <= 1 else ("I" if integer else "C"))
        for lo, hi, integer in zip(program.col_lower, program.col_upper, program.integer, strict=True)
    ]
    matrix = program.matrix.tocsr()
    for r in range(matrix.shape[0]):
        first, stop = matrix.indptr[r], matrix.indptr[r + 1]
        expression = quicksum(v * variables[c] for c, v in zip(matrix.indices[first:stop], matrix.data[first:stop],
                                                                strict=True))
        lo, hi = program.row_lower[r], program.row_upper[r]
        model.addCons(ExprCons(expression, lhs=lo if math.isfinite(lo) else None,
                               rhs=hi if math.isfinite(hi) else None))
    objective = quicksum(c * variables[i] for i, c in enumerate(program.cost) if c)
    if program.center is not None:
        center = program.center
        squared = model.addVar(lb=0.0, ub=program.radius**2 if math.isfinite(program.radius) else None)
        model.addCons(quicksum((variables[i] - center[i]) ** 2 for i in range(len(center))) <= squared)
        objective = objective + squared
    model.setObjective(objective, "minimize")
    if start is not None:
        known = model.createSol()
        for variable, value in zip(variables, start, strict=True):
            model.setSolVal(known, variable, float(value))
        if program.center is not None:
            model.setSolVal(known, squared, float(np.sum((start[: len(program.center)] - program.center) ** 2)))
        model.addSol(known)
    model.optimize()
    status = model.getStatus()
    if status == "infeasible":
        return Solution("infeasible", None, INF, INF)
    if model.getNSols() == 0:
        return Solution("time_limit", None, INF, max(model.getDualbound(), 0.0))
    best = model.getBestSol()
    point = np.array([model.getSolVal(best, v) for v in variables])
    return Solution("optimal" if status in ("optimal", "gaplimit") else "time_limit", point,
                    model.getSolObjVal(best), model.getDualbound())
