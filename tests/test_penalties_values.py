"""The penalty functions' values (eqs. 19-22 of the ALMA paper, Appendix D), computed by hand in plain Python.

test_penalties.py checks the derivatives and the axioms, which a constant shift of P or a wrong branch that is
never reached by a gradient cannot fail; these tests pin the values, their continuity at the branch points, and
that no inf/NaN leaks from the branch not taken.
"""

import pytest
import torch

from edgewise.penalties import PENALTIES, get


def _phr(y: float, rho: float, mu: float) -> float:
    return (max(0.0, mu + rho * y) ** 2 - mu**2) / (2 * rho)


def _p1(y: float, rho: float, mu: float) -> float:
    if y >= 0:
        return mu * y + rho * y**2 / 2 + rho**2 * y**3
    if y >= -mu / rho:
        return mu * y + rho * y**2 / 2
    return -(mu**2) / (2 * rho)


def _p2(y: float, rho: float, mu: float) -> float:
    return mu * y + mu * rho * y**2 + rho**2 * y**3 / 6 if y >= 0 else mu * y / (1 - rho * y)


def _p3(y: float, rho: float, mu: float) -> float:
    return mu * y + mu * rho * y**2 if y >= 0 else mu * y / (1 - rho * y)


BY_HAND = {"phr": _phr, "p1": _p1, "p2": _p2, "p3": _p3}
# Points on every branch: violated (y > 0), satisfied near 0, and far below −μ/ρ (P1's and PHR's flat part).
POINTS = [(0.4, 2.0, 0.7), (-0.2, 2.0, 0.7), (-1.0, 2.0, 1.0), (-3.0, 0.5, 0.3), (1.5, 0.5, 3.0), (-0.05, 10.0, 2.0)]


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_values_are_the_papers_equations(name: str) -> None:
    y, rho, mu = (torch.tensor(column, dtype=torch.float64) for column in zip(*POINTS, strict=True))
    expected = torch.tensor([BY_HAND[name](*point) for point in POINTS], dtype=torch.float64)
    torch.testing.assert_close(get(name).function(y, rho, mu), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(PENALTIES))
@pytest.mark.parametrize(("rho", "mu"), [(2.0, 0.7), (0.5, 3.0)])
def test_zero_at_zero_and_continuous_at_the_branch_points(name: str, rho: float, mu: float) -> None:
    function = get(name).function
    h = 1e-7
    for point in (0.0, -mu / rho):
        y = torch.tensor([point - h, point, point + h], dtype=torch.float64)
        values = function(y, torch.full_like(y, rho), torch.full_like(y, mu))
        assert float((values[0] - values[2]).abs()) < 1e-5 * max(1.0, mu), (point, values)
    assert float(function(*(torch.tensor([v], dtype=torch.float64) for v in (0.0, rho, mu)))) == 0.0


@pytest.mark.parametrize("name", sorted(PENALTIES))
@pytest.mark.parametrize("rho", [2.0, 4.0, 0.5])
def test_gradient_finite_where_the_other_branch_is_singular(name: str, rho: float) -> None:
    # P2/P3's branch y <= 0 divides by 1 − ρy, zero at y = 1/ρ > 0: evaluated there, it would make the gradient
    # through torch.where 0 · inf = NaN.
    y = torch.tensor([1 / rho, 2 / rho, 0.0, -1 / rho], dtype=torch.float64, requires_grad=True)
    function, derivative = get(name)
    rhos, mus = torch.full_like(y, rho), torch.full_like(y, 0.5)
    (grad,) = torch.autograd.grad(function(y, rhos, mus).sum(), y)
    assert bool(torch.isfinite(grad).all()), grad
    torch.testing.assert_close(grad, derivative(y.detach(), rhos, mus))
