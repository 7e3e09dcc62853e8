"""edgewise.exact.formulation's closed-form bounds against an LP solver."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import linprog

from edgewise.exact.formulation import _first_layer_l1


@pytest.mark.parametrize("seed", range(4))
def test_first_layer_l1_bounds_equal_the_lp_over_box_and_ball(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dim = 12
    weight, bias, x = rng.normal(size=(4, dim)), rng.normal(size=4), rng.random(dim)
    x[:4] = np.round(x[:4])  # black and white pixels: the box stops the budget in one direction
    radius = float(rng.uniform(0.1, 3.0))
    low, high = _first_layer_l1(sparse.csr_matrix(weight), bias, x, radius)
    # x' = x + u − v, u ∈ [0, 1 − x], v ∈ [0, x], Σ (u + v) ≤ radius: the LP of the same bounds.
    box = [*[(0.0, 1.0 - xi) for xi in x], *[(0.0, xi) for xi in x]]
    for j in range(len(bias)):
        for sign, expected in ((1.0, low[j]), (-1.0, high[j])):
            res = linprog(sign * np.r_[weight[j], -weight[j]], A_ub=np.ones((1, 2 * dim)), b_ub=[radius], bounds=box)
            assert sign * res.fun + weight[j] @ x + bias[j] == pytest.approx(expected, abs=1e-8)
