"""FAB's projection onto a hyperplane ∩ box: optimal against scipy's linprog (ℓ1, ℓ∞) and SLSQP (ℓ2), on
instances with the box inactive, active and the hyperplane missing the box (infeasible)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

from edgewise.projections import project_hyperplane

NORMS = ("l1", "l2", "linf")
REACH = (0.02, 0.3, 0.7, 0.97, 1.5)  # |c| as a fraction of the largest |c| the box allows (1.5: infeasible)


def _cases(seed: int, dim: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points t, normals w, offsets b and the reach of each row: |⟨w, t⟩ + b| is REACH × the largest decrease of
    |⟨w, z⟩ + b| over the box, so small reaches leave the box inactive, large ones make it active and 1.5 makes
    the problem infeasible. Some points sit on the box faces; the sign of c alternates."""
    generator = torch.Generator().manual_seed(seed)
    rows = 4 * len(REACH)
    t = torch.rand(rows, dim, generator=generator, dtype=torch.float64)
    t[::3, 0], t[1::3, 1] = 0.0, 1.0
    w = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    sign = torch.where(torch.arange(rows) % 2 == 0, 1.0, -1.0).double()
    # The largest decrease of sign·(⟨w, z⟩ + b) moves every coordinate to the face against sign·w.
    room = torch.where(sign.unsqueeze(1) * w > 0, t, 1 - t)
    largest = (w.abs() * room).sum(1)
    reach = torch.tensor(REACH, dtype=torch.float64).repeat(4)
    b = sign * reach * largest - (w * t).sum(1)
    return t, w, b, reach


def _linprog(t: np.ndarray, w: np.ndarray, b: float, norm: str) -> float:
    """The optimal ‖z − t‖ (ℓ1 or ℓ∞) from scipy's HiGHS: z and slacks s with |zᵢ − tᵢ| ≤ sᵢ (ℓ1) or ≤ s (ℓ∞)."""
    dim = t.size
    slacks = dim if norm == "l1" else 1
    cost = np.concatenate([np.zeros(dim), np.ones(slacks)])
    spread = np.eye(dim) if norm == "l1" else np.ones((dim, 1))
    upper = np.block([[np.eye(dim), -spread], [-np.eye(dim), -spread]])
    result = linprog(cost, A_ub=upper, b_ub=np.concatenate([t, -t]),
                     A_eq=np.concatenate([w, np.zeros(slacks)])[None], b_eq=[-b],
                     bounds=[(0, 1)] * dim + [(0, None)] * slacks, method="highs")
    assert result.status == 0, result.message
    return float(result.fun)


def _slsqp(t: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    result = minimize(lambda z: 0.5 * float(np.sum((z - t) ** 2)), np.clip(t, 0, 1), method="SLSQP",
                      jac=lambda z: z - t, bounds=[(0, 1)] * t.size,
                      constraints=[{"type": "eq", "fun": lambda z: float(w @ z + b), "jac": lambda z: w}],
                      options={"ftol": 1e-15, "maxiter": 1000})
    assert result.success, result.message
    return np.asarray(result.x)


def _corner(t: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """Where the problem is infeasible: the box's point of least |⟨w, z⟩ + b|, from linprog on the side of c."""
    side = np.sign(w @ t + b)
    result = linprog(side * w, bounds=[(0, 1)] * t.size, method="highs")
    return np.asarray(result.x)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("seed", [0, 1])
def test_optimal_against_scipy(norm: str, seed: int) -> None:
    t, w, b, reach = _cases(seed)
    z = project_hyperplane(t, w, b, norm=norm)
    assert float(z.min()) >= 0 and float(z.max()) <= 1
    order = {"l1": 1, "l2": 2, "linf": np.inf}[norm]
    for i in range(len(t)):
        ti, wi, bi, zi = t[i].numpy(), w[i].numpy(), float(b[i]), z[i].numpy()
        if reach[i] > 1:
            np.testing.assert_allclose(zi, _corner(ti, wi, bi), atol=1e-12)
            continue
        assert abs(float(wi @ zi + bi)) <= 1e-12 * (1 + np.abs(wi).sum()), (norm, i)
        if norm == "l2":
            np.testing.assert_allclose(zi, _slsqp(ti, wi, bi), atol=1e-6)
        else:
            ours = float(np.linalg.norm(zi - ti, ord=order))
            np.testing.assert_allclose(ours, _linprog(ti, wi, bi, norm), rtol=1e-9, atol=1e-12)


def test_box_active_and_inactive_cases_occur() -> None:
    # Some feasible rows are plain unconstrained ℓ2 projections (inside the box), the others need the box: both
    # cases are tested above.
    t, w, b, reach = _cases(0)
    z = project_hyperplane(t, w, b, norm="l2")
    free = t - ((w * t).sum(1) + b).unsqueeze(1) * w / w.square().sum(1, keepdim=True)
    inside = ((free >= 0) & (free <= 1)).all(1)
    feasible = reach <= 1
    assert bool((inside & feasible).any()) and bool((~inside & feasible).any())
    torch.testing.assert_close(z[inside], free[inside])


@pytest.mark.parametrize("norm", NORMS)
def test_float32_and_shape_and_zero_normal(norm: str) -> None:
    t, w, b, reach = _cases(2)
    images = t.float().view(-1, 1, 7, 1)
    z = project_hyperplane(images, w.float().view_as(images), b.float(), norm=norm)
    assert z.shape == images.shape and z.dtype == torch.float32
    value = (w.float() * z.flatten(1)).sum(1) + b.float()
    assert float(value[reach <= 1].abs().max()) <= 1e-5
    # wᵢ = 0 everywhere: nothing can move, the point comes back (a zero gradient gives this hyperplane).
    assert torch.equal(project_hyperplane(t, torch.zeros_like(w), b, norm=norm), t)
    # A point on the hyperplane stays.
    torch.testing.assert_close(project_hyperplane(t, w, -(w * t).sum(1), norm=norm), t, rtol=0, atol=1e-15)


def test_bad_arguments() -> None:
    t, w, b, _ = _cases(3)
    with pytest.raises(ValueError, match="norm must be one of"):
        project_hyperplane(t, w, b, norm="l0")
    with pytest.raises(ValueError, match="normal must be a tensor of the shape of points"):
        project_hyperplane(t, w[:2], b, norm="l2")
    with pytest.raises(ValueError, match=r"offset must be a tensor of shape \(20,\)"):
        project_hyperplane(t, w, b[:3], norm="l2")
    with pytest.raises(TypeError, match="points must be a floating-point tensor"):
        project_hyperplane(t.long(), w, b, norm="l2")
