"""1 − SSIM against scikit-image on gray and color images; properties and errors."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from edgewise.distances.ssim import ssim, ssim_map


def skimage_distance(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return np.array([1 - structural_similarity(a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
                                               use_sample_covariance=False, data_range=1.0, channel_axis=0)
                     for a, b in zip(x, y, strict=True)])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("noise", [0.02, 0.3])
def test_matches_skimage(channels, noise):
    generator = torch.Generator().manual_seed(channels)
    x = torch.rand(3, channels, 28, 23, generator=generator, dtype=torch.float64)
    y = (x + noise * torch.randn(x.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    np.testing.assert_allclose(ssim(x, y).numpy(), skimage_distance(x, y), rtol=0, atol=1e-5)


def test_matches_skimage_in_float32():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    y = x.flip(-2)
    np.testing.assert_allclose(ssim(x, y).numpy(), skimage_distance(x.double(), y.double()), rtol=0, atol=1e-5)


def test_identical_images_have_distance_zero_and_map_is_valid_part():
    x = torch.rand(2, 3, 12, 15, dtype=torch.float64)
    assert ssim_map(x, x).shape == (2, 3, 2, 5)
    torch.testing.assert_close(ssim(x, x), torch.zeros(2, dtype=torch.float64))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"H, W >= 11, got \(1, 1, 10, 20\)"):
        ssim(torch.rand(1, 1, 10, 20), torch.rand(1, 1, 10, 20))
    with pytest.raises(ValueError, match=r"perturbed must have the shape of reference"):
        ssim(torch.rand(1, 1, 12, 12), torch.rand(1, 3, 12, 12))


def test_does_not_depend_on_the_default_dtype_or_device():
    # The Gaussian window is made in the images' dtype and on their device: float64 SSIM is the same whatever
    # torch's default dtype, and a window made on the default device would meet the CPU images and fail under a
    # "meta" default device, as it would on a GPU.
    generator = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 16, 16, generator=generator, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    expected = ssim(x, y)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if default == torch.float64 else torch.float64)
    try:
        other_dtype = ssim(x, y)
    finally:
        torch.set_default_dtype(default)
    with torch.device("meta"):
        other_device = ssim(x, y)
    assert expected.dtype == torch.float64
    assert torch.equal(other_dtype, expected) and torch.equal(other_device, expected)
