"""The ℓp distances against numpy's norms (an independent implementation) and the gradient of ℓ2 by hand."""

import numpy as np
import pytest
import torch

from edgewise.distances import get, l0, l1, l2, linf


def pair(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A (4, 2, 3, 3) batch and a perturbation of it: mixed signs, one sample unchanged, one changed in one
    element only, so that a norm that squares, drops the sign or reduces over the batch shows."""
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(4, 2, 3, 3, generator=generator, dtype=torch.float64)
    delta = torch.randn(4, 2, 3, 3, generator=generator, dtype=torch.float64)
    delta[1] = 0
    delta[2] = 0
    delta[2, 1, 2, 0] = -0.7
    delta[3, 0, 0] = 0  # some exact zeros among changed elements
    return reference.to(dtype), (reference + delta).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("function", "order"), [(l0, 0), (l1, 1), (l2, 2), (linf, np.inf)])
def test_lp_equal_numpy_norms_per_sample(function, order, dtype):
    reference, perturbed = pair(dtype)
    value = function(reference, perturbed)
    difference = (perturbed - reference).reshape(len(reference), -1).double().numpy()
    expected = np.linalg.norm(difference, ord=order, axis=1)
    assert value.shape == (4,) and value.dtype == dtype
    np.testing.assert_allclose(value.double().numpy(), expected, rtol=1e-6, atol=0)
    assert value[1] == 0


def test_l2_gradient_is_the_unit_direction_and_zero_at_the_reference():
    reference, perturbed = pair()
    perturbed.requires_grad_(True)
    (grad,) = torch.autograd.grad(l2(reference, perturbed).sum(), perturbed)
    difference = (perturbed - reference).detach()
    norms = difference.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expected = torch.where(norms > 0, difference / norms.clamp_min(1e-300), 0)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)
    assert (grad[1] == 0).all()


@pytest.mark.parametrize("name", ["l0", "l1", "l2", "linf"])
def test_registry_entries_are_the_lp_functions(name):
    reference, perturbed = pair()
    function = {"l0": l0, "l1": l1, "l2": l2, "linf": linf}[name]
    torch.testing.assert_close(get(name)(reference)(perturbed), function(reference, perturbed), rtol=0, atol=0)
