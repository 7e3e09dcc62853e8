"""Conformance of every differentiable registered distance: float64 gradcheck, no NaN gradient at
perturbed == reference, batch independence, dtype and device kept. New entries get these tests for free."""

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch

from edgewise.distances import entry, get, names
from edgewise.models import load_model

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@functools.cache
def zoo_features(dtype: torch.dtype, device: str) -> torch.nn.Module:
    return load_model("smallcnn-rgb-fmnist", device=device).to(dtype)


# name -> (options for a dtype and device, input shape (B, C, H, W), gradcheck in fast mode)
CASES: dict[str, tuple[Callable[[torch.dtype, str], dict[str, Any]], tuple[int, ...], bool]] = {
    "ciede2000": (lambda dtype, device: {}, (2, 3, 5, 5), False),
    "ssim": (lambda dtype, device: {}, (2, 3, 12, 12), False),
    "lpips": (lambda dtype, device: {"features": zoo_features(dtype, device)}, (2, 3, 28, 28), True),
}
DEFAULT_CASE = (lambda dtype, device: {}, (2, 3, 12, 12), False)
DIFFERENTIABLE = [name for name in names() if entry(name).differentiable]


def pair(name: str, dtype: torch.dtype, device: str = "cpu", seed: int = 0):
    options, shape, fast = CASES.get(name, DEFAULT_CASE)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator, dtype=torch.float64).clamp(0.05, 0.95)
    y = x + 0.03 * torch.randn(shape, generator=generator, dtype=torch.float64)
    return get(name, **options(dtype, device)), x.to(device, dtype), y.to(device, dtype), fast


def test_new_distances_are_registered():
    assert {"ciede2000", "ssim", "lpips"} <= set(DIFFERENTIABLE)
    for name in ("ciede2000", "ssim", "lpips"):
        assert entry(name).matches


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradcheck_float64(name):
    factory, x, y, fast = pair(name, torch.float64)
    distance = factory(x)
    assert torch.autograd.gradcheck(distance, (y.requires_grad_(True),), fast_mode=fast)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_zero_and_finite_gradient_at_the_reference(name):
    factory, x, _, _ = pair(name, torch.float64)
    x[0, :, 0, :] = 0.0  # black and white rows: the traps of the color conversion
    x[0, :, 1, :] = 1.0
    perturbed = x.clone().requires_grad_(True)
    value = factory(x)(perturbed)
    (grad,) = torch.autograd.grad(value.sum(), perturbed)
    torch.testing.assert_close(value, torch.zeros_like(value), rtol=0, atol=1e-12)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_batch_independence(name):
    factory, x, y, _ = pair(name, torch.float64, seed=1)
    batch = factory(x)(y)
    alone = torch.cat([factory(x[i: i + 1])(y[i: i + 1]) for i in range(len(x))])
    torch.testing.assert_close(alone, batch, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_dtype_device_and_shape_kept(name, dtype, device):
    factory, x, y, _ = pair(name, dtype, device)
    value = factory(x)(y)
    assert value.shape == (len(x),) and value.dtype == dtype and value.device == x.device
    assert torch.isfinite(value).all() and (value > 0).all()
