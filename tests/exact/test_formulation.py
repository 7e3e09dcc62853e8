"""edgewise.exact's bounds against independent solvers: the first layer's closed forms (ℓ1: scipy's LP; ℓ2: a
Clarabel cone program) and ℓ2's cone-program bounds (scipy's SLSQP)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linprog, minimize

from edgewise.exact.formulation import _first_layer_l1, _first_layer_l2, build, compute_bounds
from edgewise.exact.network import Affine, Network, ReLU
from edgewise.exact.solvers import ball_ranges


def _first_layer_case(seed: int, dim: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Weights, biases and an input of which 4 pixels are black or white (the box stops the ball there in one
    direction), and a radius."""
    rng = np.random.default_rng(seed)
    weight, bias, x = rng.normal(size=(4, dim)), rng.normal(size=4), rng.random(dim)
    x[:4] = np.round(x[:4])
    return weight, bias, x, float(rng.uniform(0.1, 3.0))


@pytest.mark.parametrize("seed", range(4))
def test_first_layer_l1_bounds_equal_the_lp_over_box_and_ball(seed: int) -> None:
    weight, bias, x, radius = _first_layer_case(seed)
    dim = len(x)
    low, high = _first_layer_l1(sparse.csr_matrix(weight), bias, x, radius)
    # x' = x + u − v, u ∈ [0, 1 − x], v ∈ [0, x], Σ (u + v) ≤ radius: the LP of the same bounds.
    box = [*[(0.0, 1.0 - xi) for xi in x], *[(0.0, xi) for xi in x]]
    for j in range(len(bias)):
        for sign, expected in ((1.0, low[j]), (-1.0, high[j])):
            res = linprog(sign * np.r_[weight[j], -weight[j]], A_ub=np.ones((1, 2 * dim)), b_ub=[radius], bounds=box)
            assert sign * res.fun + weight[j] @ x + bias[j] == pytest.approx(expected, abs=1e-8)


def _cone_minimum(cost: np.ndarray, x: np.ndarray, radius: float) -> float:
    """min cost·δ s.t. −x ≤ δ ≤ 1 − x, ‖δ‖₂ ≤ radius, by Clarabel (a general conic solver)."""
    clarabel = pytest.importorskip("clarabel")
    dim = len(x)
    eye = sparse.eye(dim, format="csc")
    # A δ + s = b, s in the cones: s = 1 − x − δ ≥ 0, s = x + δ ≥ 0, and s = (radius, −δ) in the second-order cone.
    constraints = sparse.vstack([eye, -eye, sparse.csc_matrix((1, dim)), eye]).tocsc()
    rhs = np.r_[1 - x, x, radius, np.zeros(dim)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    cones = [clarabel.NonnegativeConeT(2 * dim), clarabel.SecondOrderConeT(dim + 1)]
    solution = clarabel.DefaultSolver(sparse.csc_matrix((dim, dim)), cost, constraints, rhs, cones, settings).solve()
    assert str(solution.status) == "Solved"
    return float(solution.obj_val)


@pytest.mark.parametrize("seed", range(4))
def test_first_layer_l2_bounds_equal_the_qcqp_over_box_and_ball(seed: int) -> None:
    weight, bias, x, radius = _first_layer_case(seed)
    weight[0, 5:] = 0.0  # a row that reaches its box corner inside the ball for the larger radii
    low, high = _first_layer_l2(sparse.csr_matrix(weight), bias, x, radius)
    for j in range(len(bias)):
        for sign, expected in ((1.0, low[j]), (-1.0, high[j])):
            assert sign * _cone_minimum(sign * weight[j], x, radius) + weight[j] @ x + bias[j] == pytest.approx(
                expected, abs=1e-6)
    # Never looser than Cauchy-Schwarz, and tighter on these images (the box binds).
    dual = radius * np.linalg.norm(weight, axis=1)
    center = weight @ x + bias
    assert (high <= center + dual + 1e-12).all() and (low >= center - dual - 1e-12).all()
    assert (high - low < 2 * dual - 1e-6).any()


@pytest.mark.parametrize("seed", range(3))
def test_ball_ranges_equal_the_cone_program_by_scipy(seed: int) -> None:
    """The range of each undecided first-layer ReLU's output over the relaxation in box ∩ ball, by Clarabel's cone
    programs, against SLSQP on the same program written by hand (Tjeng et al.'s big-M rows with the binary
    relaxed to [0, 1] project to the triangle a ≥ z, a ≥ 0, a ≤ u (z − l) / (u − l))."""
    pytest.importorskip("clarabel")
    rng = np.random.default_rng(seed)
    dim, hidden = 6, 5
    w1, b1 = rng.normal(size=(hidden, dim)), rng.normal(size=hidden) * 0.3
    w2, b2 = rng.normal(size=(3, hidden)), rng.normal(size=3)
    network = Network([Affine(sparse.csr_matrix(w1), b1), ReLU(), Affine(sparse.csr_matrix(w2), b2)], dim, 3)
    x, radius = rng.random(dim), 0.6
    bounds = compute_bounds(network, x, "l2", radius, label=0, targeted=False, tolerance=0.0, lp=None)
    first_low, first_high = bounds.layers[0]
    program, cols = build(network, x, "l2", radius, bounds, label=0, targeted=False, tolerance=0.0, upto=2)
    low, high = ball_ranges(program, cols, sparse.csr_matrix(np.eye(hidden)))
    unstable = np.flatnonzero((first_low < 0) & (first_high > 0))
    assert len(unstable), "no undecided ReLU: the relaxation would be exact and the test would not see it"
    for i in unstable:
        u, lo = first_high[i], first_low[i]

        def z(v: np.ndarray, i: int = i) -> float:
            return float(w1[i] @ (x + v[:dim]) + b1[i])

        # variables (δ, a_i)
        constraints = [{"type": "ineq", "fun": lambda v: radius**2 - v[:dim] @ v[:dim]},
                       {"type": "ineq", "fun": lambda v, z=z: v[dim] - z(v)},
                       {"type": "ineq", "fun": lambda v, z=z, u=u, lo=lo: u * (z(v) - lo) / (u - lo) - v[dim]}]
        box = [*zip(-x, 1 - x, strict=True), (0.0, u)]
        for sign, got in ((1.0, low[i]), (-1.0, high[i])):
            res = minimize(lambda v, sign=sign: sign * v[dim], np.r_[np.zeros(dim), max(0.0, z(np.zeros(dim)))],
                           method="SLSQP", bounds=box, constraints=constraints,
                           options={"ftol": 1e-12, "maxiter": 1000})
            assert res.success
            assert sign * res.fun == pytest.approx(got, abs=1e-5)
