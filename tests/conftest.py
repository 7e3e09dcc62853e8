"""Shared fixtures: linear oracle models whose minimal adversarial perturbations are known in closed form."""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

if TYPE_CHECKING:
    import numpy as np


def require(module: str, install: str) -> None:
    """Skip when ``module`` cannot be found, unless EDGEWISE_REQUIRE_BASELINES is set (`make test` sets it and
    installs every optional library): then its absence is a failure, not a silent skip. ``install`` is the command
    that installs it, for the message."""
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed ({install})"
    if os.environ.get("EDGEWISE_REQUIRE_BASELINES"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class LinearOracle:
    """A linear classifier, logits [0, w·x, -0.1, ...], and inputs whose minimal perturbations are interior.

    For f(x) = w·x + b, the smallest ℓp perturbation that flips sign(f) is |f(x)| / ‖w‖_q with q the dual
    norm: ℓ2 -> ‖w‖₂, ℓ1 -> ‖w‖∞ (move the single coordinate of largest |w|), ℓ∞ -> ‖w‖₁. The inputs are
    chosen so that every optimal perturbation stays inside [0, 1] (the box constraint is not active).
    """

    model: nn.Module
    inputs: torch.Tensor
    labels: torch.Tensor
    l2: torch.Tensor
    l1: torch.Tensor
    linf: torch.Tensor


def make_linear_oracle(batch: int = 8, shape: tuple[int, ...] = (1, 8, 8), *, seed: int = 0,
                       classes: int = 2) -> LinearOracle:
    generator = torch.Generator().manual_seed(seed)
    dim = int(torch.tensor(shape).prod())
    w = torch.randn(dim, generator=generator, dtype=torch.float64)
    w = w / w.norm()
    inputs = 0.35 + 0.3 * torch.rand(batch, dim, generator=generator, dtype=torch.float64)
    # Move each input along w to w·x = ±margin; margins so small that even the ℓ1-optimal single-coordinate
    # move (|f| / max|w|) stays inside the box.
    margin = (0.02 + 0.08 * torch.rand(batch, generator=generator, dtype=torch.float64)) * w.abs().max()
    sign = torch.where(torch.arange(batch) % 2 == 0, 1.0, -1.0).double()
    inputs = inputs + (sign * margin - inputs @ w).unsqueeze(1) * w
    # Classes beyond the first two have a constant logit of -0.1 < max(0, w·x): they never win, so the decision
    # boundary and the optima stay those of the binary model (DLR⁺ needs 3 classes, tDLR⁺ 4).
    layer = nn.Linear(dim, classes)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1] = w.float()
        layer.bias.zero_()
        layer.bias[2:] = -0.1
    f = (inputs @ w).abs()
    return LinearOracle(
        model=nn.Sequential(nn.Flatten(), layer).eval(),
        inputs=inputs.float().view(batch, *shape),
        labels=(sign > 0).long(),
        l2=(f / w.norm(p=2)).float(),
        l1=(f / w.abs().max()).float(),
        linf=(f / w.abs().sum()).float(),
    )


def make_box_oracle(batch: int = 8, dim: int = 64, *, seed: int = 1) -> LinearOracle:
    """A linear oracle whose box constraint is active: the minimal perturbations are those of the free pixels.

    w > 0 everywhere; the first half of the pixels is 0 (black background), so the direction −w that lowers
    f = w·x + b pushes them below the box and they cannot help. The second half sits at 0.5 + a small move
    along w_free, so the optimum changes only free pixels and stays inside [0, 1]: |f| / ‖w_free‖_q, larger
    than the unconstrained |f| / ‖w‖_q. An ℓ2 attack that projects on the ε-ball before clipping to the box
    spends its radius on the blocked pixels.
    """
    generator = torch.Generator().manual_seed(seed)
    w = torch.rand(dim, generator=generator, dtype=torch.float64) + 0.5
    w = w / w.norm()
    free = w[dim // 2:]
    margin = 0.02 + 0.05 * torch.rand(batch, generator=generator, dtype=torch.float64)
    inputs = torch.zeros(batch, dim, dtype=torch.float64)
    inputs[:, dim // 2:] = 0.5 + (margin / free.square().sum()).unsqueeze(1) * free
    layer = nn.Linear(dim, 3)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[1] = w.float()
        layer.bias.zero_()
        layer.bias[1] = -0.5 * float(free.sum())  # f = w_free·(x_free − 0.5) = margin
        layer.bias[2] = -0.1
    return LinearOracle(
        model=nn.Sequential(nn.Flatten(), layer).eval(),
        inputs=inputs.float(),
        labels=torch.ones(batch, dtype=torch.long),
        l2=(margin / free.norm(p=2)).float(),
        l1=(margin / free.abs().max()).float(),
        linf=(margin / free.abs().sum()).float(),
    )


class Bent(nn.Module):
    """The linear oracle's model with its class-1 logit f bent to f (1 − |f| / 2): same sign, same decision
    boundary {f = 0}, hence the same closed-form minimal perturbations, but a concave margin near it.

    On the exactly linear model FMN's first ε-step (line 7, ‖δ‖ + L / ‖∇L‖q) lands exactly on the boundary and
    stays there (a fixed point of the algorithm: adv-lib 0.2.8's fmn leaves 3/16 (ℓ2) and 1/16 (ℓ1) of the
    oracle's samples unbroken too), so success would depend on rounding. With curvature it steps across.
    """

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear
        self.training = linear.training  # the mode of the model it bends (attacks refuse train mode)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.linear(inputs)
        bent = logits[:, 1] * (1 - logits[:, 1].abs() / 2)
        return torch.cat([logits[:, :1], bent.unsqueeze(1), logits[:, 2:]], 1)


@pytest.fixture
def bend() -> type[Bent]:
    """``Bent`` itself: ``bend(oracle.model)`` is the oracle's model with a curved margin."""
    return Bent


@pytest.fixture
def box_oracle() -> LinearOracle:
    return make_box_oracle()


@pytest.fixture
def linear_oracle() -> LinearOracle:
    return make_linear_oracle()


@pytest.fixture
def oracle_factory():
    """``make_linear_oracle`` itself, for tests that need other sizes or more classes."""
    return make_linear_oracle


@pytest.fixture
def single_thread():
    """One intra-op thread: on the shared, overloaded CPU of the project machine two spinning threads make small
    convolutions up to 1000x slower (and a run of the command line about 7x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def polyhedron_minimum(a: np.ndarray, b: np.ndarray, x: np.ndarray, norm: str) -> float:
    """min ‖δ‖_norm s.t. a δ ≤ b, −x ≤ δ ≤ 1 − x (inf where infeasible), by scipy: an LP for ℓ∞ and ℓ1, SLSQP from
    a feasible point for ℓ2. The oracle of the exact minima (tests/exact) and of attacks on linear models."""
    import numpy as np
    from scipy.optimize import linprog, minimize

    dim = x.size
    if norm == "l2":
        feasible = linprog(np.zeros(dim), A_ub=a, b_ub=b, bounds=list(zip(-x, 1 - x, strict=True)))
        if feasible.status != 0:
            return math.inf
        res = minimize(lambda d: d @ d, feasible.x, jac=lambda d: 2 * d, method="SLSQP",
                       constraints=[{"type": "ineq", "fun": lambda d: b - a @ d, "jac": lambda d: -a}],
                       bounds=list(zip(-x, 1 - x, strict=True)), options={"ftol": 1e-14, "maxiter": 500})
        return math.sqrt(res.fun) if res.success else math.inf
    if norm == "linf":
        # variables (δ, t): min t, |δ_i| ≤ t
        eye = np.eye(dim)
        a_ub = np.vstack([np.c_[a, np.zeros(len(a))], np.c_[eye, -np.ones(dim)], np.c_[-eye, -np.ones(dim)]])
        b_ub = np.r_[b, np.zeros(2 * dim)]
        cost = np.r_[np.zeros(dim), 1.0]
        bounds = [*zip(-x, 1 - x, strict=True), (0, None)]
    else:
        # variables (δ, e): min Σ e, |δ_i| ≤ e_i
        eye = np.eye(dim)
        a_ub = np.vstack([np.c_[a, np.zeros_like(a)], np.c_[eye, -eye], np.c_[-eye, -eye]])
        b_ub = np.r_[b, np.zeros(2 * dim)]
        cost = np.r_[np.zeros(dim), np.ones(dim)]
        bounds = [*zip(-x, 1 - x, strict=True), *[(0, None)] * dim]
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    return float(res.fun) if res.status == 0 else math.inf
