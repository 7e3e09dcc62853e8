"""sRGB → CIELAB against colour-science, white → L* = 100, round trip, finite gradients on all of [0, 1]."""

import itertools

import colour
import numpy as np
import pytest
import torch

from edgewise.color import lab_to_rgb, rgb_to_lab

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def colour_lab(rgb: torch.Tensor) -> np.ndarray:
    """colour-science's sRGB → CIELAB of a ``(B, 3, H, W)`` batch, as ``(B, 3, H, W)``."""
    pixels = rgb.double().permute(0, 2, 3, 1).cpu().numpy()
    return np.moveaxis(colour.XYZ_to_Lab(colour.sRGB_to_XYZ(pixels)), -1, 1)


def edge_colors() -> torch.Tensor:
    """Corners of the RGB cube, grays, values at and around the sRGB knee (0.04045) and next to 0 and 1."""
    levels = [0.0, 1e-7, 1e-4, 0.04045, 0.0405, 0.5, 1 - 1e-7, 1.0]
    corners = list(itertools.product([0.0, 1.0], repeat=3))
    grays = [(v, v, v) for v in levels]
    mixed = [(v, 1 - v, 0.04045) for v in levels]
    return torch.tensor(corners + grays + mixed, dtype=torch.float64).T.reshape(1, 3, 1, -1)


def test_white_is_lightness_100_and_black_is_0():
    lab = rgb_to_lab(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64).view(3, 1, 2))
    assert lab[0, 0, 0].item() == pytest.approx(100.0, abs=1e-9)
    assert lab[:, 0, 1].abs().max().item() == pytest.approx(0.0, abs=1e-9)
    # a*, b* of white are not exactly 0 in colour-science's sRGB either (the 4-decimal matrix vs the xy white).
    assert lab[1:, 0, 0].abs().max().item() < 0.01


@pytest.mark.parametrize("kind", ["random", "edge"])
def test_matches_colour_science(kind):
    rgb = torch.rand(4, 3, 9, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) \
        if kind == "random" else edge_colors()
    np.testing.assert_allclose(rgb_to_lab(rgb).numpy(), colour_lab(rgb), rtol=0, atol=1e-4)


def test_matches_colour_science_in_float32():
    rgb = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(rgb_to_lab(rgb).double().numpy(), colour_lab(rgb), rtol=0, atol=1e-3)


def test_round_trip():
    rgb = torch.cat((torch.rand(1, 3, 1, 50, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
                     edge_colors()), -1)
    # 1e-7, not 1e-15: the standard's two knees (0.04045 and 0.0031308) do not map exactly onto each other.
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(rgb)), rgb, rtol=0, atol=1e-7)


def test_gradients_finite_everywhere_including_zero():
    rgb = edge_colors().requires_grad_(True)
    for channel in range(3):
        (grad,) = torch.autograd.grad(rgb_to_lab(rgb)[:, channel].sum(), rgb)
        assert torch.isfinite(grad).all()
    lab = rgb_to_lab(edge_colors()).requires_grad_(True)
    (grad,) = torch.autograd.grad(lab_to_rgb(lab).sum(), lab)
    assert torch.isfinite(grad).all()


def test_gradcheck():
    rgb = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    rgb = rgb.clamp(0.05, 0.95).requires_grad_(True)  # away from the knees, where one-sided limits differ
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb,))
    lab = rgb_to_lab(rgb.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(lab_to_rgb, (lab,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_kept(dtype, device):
    rgb = torch.rand(2, 5, 3, 4, 4, dtype=dtype, device=device)
    for out in (rgb_to_lab(rgb), lab_to_rgb(rgb_to_lab(rgb))):
        assert out.shape == rgb.shape and out.dtype == dtype and out.device == rgb.device


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"rgb must have shape \(\*, 3, H, W\), got \(2, 1, 4, 4\)"):
        rgb_to_lab(torch.rand(2, 1, 4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        rgb_to_lab(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        rgb_to_lab(np.zeros((1, 3, 2, 2)))
