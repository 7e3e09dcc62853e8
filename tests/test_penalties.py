"""The four axioms of penalty-Lagrangian functions (ALMA paper, sec. 3.1), checked numerically for each P."""

import pytest
import torch

from edgewise.penalties import PENALTIES, get

NAMES = sorted(PENALTIES)
ys = torch.linspace(-5, 5, 2001, dtype=torch.float64)


def grid(value: float) -> torch.Tensor:
    return torch.full_like(ys, value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("rho", "mu"), [(0.5, 0.1), (1.0, 1.0), (10.0, 3.0)])
def test_derivative_is_the_gradient_and_non_negative(name: str, rho: float, mu: float) -> None:
    function, derivative = get(name)
    y = ys.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad(function(y, grid(rho), grid(mu)).sum(), y)
    torch.testing.assert_close(derivative(ys, grid(rho), grid(mu)), autograd)
    assert bool((autograd >= 0).all())                                               # axiom 1
    assert bool(torch.isfinite(autograd).all())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("rho", "mu"), [(0.5, 0.1), (1.0, 1.0), (10.0, 3.0)])
def test_derivative_at_zero_is_mu(name: str, rho: float, mu: float) -> None:
    zero = torch.zeros(1, dtype=torch.float64)
    assert float(get(name).derivative(zero, zero + rho, zero + mu)) == pytest.approx(mu)   # axiom 2


@pytest.mark.parametrize("name", NAMES)
def test_limits_as_rho_grows(name: str) -> None:
    derivative = get(name).derivative
    rhos = torch.tensor([1e1, 1e3, 1e5, 1e7], dtype=torch.float64)
    mu = torch.full_like(rhos, 0.5)
    violated = derivative(torch.full_like(rhos, 0.2), rhos, mu)       # axiom 3: -> inf when y > 0
    satisfied = derivative(torch.full_like(rhos, -0.2), rhos, mu)     # axiom 4: -> 0 when y < 0
    assert bool((violated.diff() > 0).all()) and float(violated[-1]) > 1e6
    assert float(satisfied[-1]) < 1e-6


def test_p2_is_the_papers_eq_10() -> None:
    y, rho, mu = torch.tensor([0.3, -0.3]), torch.tensor([2.0, 2.0]), torch.tensor([0.7, 0.7])
    expected = [0.7 * 0.3 + 0.7 * 2 * 0.09 + 4 * 0.027 / 6, 0.7 * -0.3 / (1 + 0.6)]
    torch.testing.assert_close(get("p2").function(y, rho, mu), torch.tensor(expected))


def test_unknown_penalty() -> None:
    with pytest.raises(ValueError, match="penalty must be one of"):
        get("p9")
