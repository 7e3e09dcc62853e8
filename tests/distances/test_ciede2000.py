"""CIEDE2000 against the 34 published pairs of Sharma, Wu & Dalal (2005) and colour-science; gradients."""

import colour
import numpy as np
import pytest
import torch

from edgewise.color import rgb_to_lab
from edgewise.distances.ciede2000 import ciede2000, delta_e00

# Sharma, Wu & Dalal, Color Res. Appl. 30(1), 2005, Table I: (L*, a*, b*) of sample 1, of sample 2, and ΔE00.
SHARMA_PAIRS = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def as_image(colors) -> torch.Tensor:
    """A list of (L*, a*, b*) as a ``(1, 3, 1, N)`` float64 image."""
    return torch.tensor(colors, dtype=torch.float64).T.reshape(1, 3, 1, -1)


def colour_delta_e(lab1: torch.Tensor, lab2: torch.Tensor) -> np.ndarray:
    """colour-science's ΔE00 of two ``(B, 3, H, W)`` CIELAB images, as ``(B, H, W)``."""
    return colour.delta_E(lab1.permute(0, 2, 3, 1).numpy(), lab2.permute(0, 2, 3, 1).numpy(), method="CIE 2000")


def test_the_table_has_34_pairs():
    assert len(SHARMA_PAIRS) == 34


def test_published_pairs():
    lab1, lab2 = as_image([p[0] for p in SHARMA_PAIRS]), as_image([p[1] for p in SHARMA_PAIRS])
    published = np.array([p[2] for p in SHARMA_PAIRS])
    # The published values have 4 decimals (rounding error up to 5e-5).
    np.testing.assert_allclose(delta_e00(lab1, lab2).flatten().numpy(), published, rtol=0, atol=1e-4)
    # Symmetric, as the formula is (the table's pairs 7 and 8 are one pair swapped).
    np.testing.assert_allclose(delta_e00(lab2, lab1).flatten().numpy(), published, rtol=0, atol=1e-4)


def test_published_pairs_are_typed_right():
    """The table above, checked against an independent implementation: colour-science."""
    lab1, lab2 = as_image([p[0] for p in SHARMA_PAIRS]), as_image([p[1] for p in SHARMA_PAIRS])
    published = np.array([p[2] for p in SHARMA_PAIRS])
    np.testing.assert_allclose(colour_delta_e(lab1, lab2).flatten(), published, rtol=0, atol=1e-4)


def test_random_pairs_match_colour_science():
    generator = torch.Generator().manual_seed(0)
    rgb1 = torch.rand(4, 3, 16, 16, generator=generator, dtype=torch.float64)
    near = (rgb1 + 0.05 * torch.randn(rgb1.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    far = torch.rand(4, 3, 16, 16, generator=generator, dtype=torch.float64)
    for rgb2 in (near, far):
        lab1, lab2 = rgb_to_lab(rgb1), rgb_to_lab(rgb2)
        np.testing.assert_allclose(delta_e00(lab1, lab2).numpy(), colour_delta_e(lab1, lab2), rtol=0, atol=1e-4)


def test_image_distance_is_l2_norm_of_colour_science_delta_e():
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 8, 8, generator=generator, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    lab = [colour.XYZ_to_Lab(colour.sRGB_to_XYZ(i.permute(0, 2, 3, 1).numpy())) for i in (x, y)]
    expected = np.sqrt((colour.delta_E(lab[0], lab[1], method="CIE 2000") ** 2).reshape(3, -1).sum(1))
    np.testing.assert_allclose(ciede2000(x, y).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_gray_images_are_rgb_with_equal_channels():
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = x.flip(-1)
    torch.testing.assert_close(ciede2000(x, y), ciede2000(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))


def test_white_black_difference_is_100():
    """With white at L* = 100 the black-white ΔE00 is 100 (adv-lib 0.2.8's white L* ≈ 9 gives about 9)."""
    white, black = torch.ones(1, 3, 1, 1, dtype=torch.float64), torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    assert ciede2000(white, black).item() == pytest.approx(100.0, abs=0.01)


def test_gradcheck_on_lab_including_hue_wrap():
    # Sharma's pairs 9-16 straddle the hue wrap (|h1 - h2| near 180 degrees); perturb them off the exact
    # boundary so the finite differences stay on one branch.
    lab1 = as_image([p[0] for p in SHARMA_PAIRS[8:20]]) + 0.01
    lab2 = as_image([p[1] for p in SHARMA_PAIRS[8:20]]) - 0.02
    assert torch.autograd.gradcheck(delta_e00, (lab1.requires_grad_(True), lab2.requires_grad_(True)))


def test_gradients_finite_at_achromatic_colors_and_wrap():
    """Exact grays (a* = b* = 0: sqrt and atan2 at 0), identical colors, and hue angles on the wrap."""
    colors = [p[0] for p in SHARMA_PAIRS] + [(50.0, 0.0, 0.0), (0.0, 0.0, 0.0), (100.0, 0.0, 0.0)]
    others = [p[1] for p in SHARMA_PAIRS] + [(50.0, 0.0, 0.0), (0.0, 0.0, 0.0), (60.0, 0.0, 0.0)]
    for lab1, lab2 in ((as_image(colors), as_image(others)), (as_image(colors), as_image(colors))):
        lab2 = lab2.requires_grad_(True)
        (grad,) = torch.autograd.grad(delta_e00(lab1, lab2).sum(), lab2)
        assert torch.isfinite(grad).all()


def test_identity_gives_zero_and_zero_gradient():
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # black
    x[0, :, 0, 1] = 1.0  # white
    x[1, :, 2, 2] = 0.5  # gray
    perturbed = x.clone().requires_grad_(True)
    distance = ciede2000(x, perturbed)
    (grad,) = torch.autograd.grad(distance.sum(), perturbed)
    assert distance.abs().max().item() == 0.0 and torch.isfinite(grad).all() and grad.abs().max().item() == 0.0


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"reference must have shape \(B, 1 or 3, H, W\), got \(1, 2, 4, 4\)"):
        ciede2000(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"perturbed must have the shape of reference \(1, 3, 4, 4\)"):
        ciede2000(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))


def test_hue_differences_at_and_beyond_180_match_colour_science():
    # Eq. 10 wraps Δh' only beyond ±180: pairs 180-181 degrees apart, and pairs exactly opposite (b*, a* negated
    # and doubled: Δh' = -180 exactly for many of them), with mean hues near 275 degrees, where R_T, and so the
    # sign of ΔH' in the term R_T ΔC' ΔH', matters most.
    hues = torch.linspace(345.0, 359.0, 16, dtype=torch.float64)
    chroma = torch.linspace(10.0, 40.0, 16, dtype=torch.float64)
    a, b = chroma * torch.cos(torch.deg2rad(hues)), chroma * torch.sin(torch.deg2rad(hues))
    first = torch.stack([torch.full_like(a, 50.0), a, b]).view(1, 3, 1, -1)
    opposite = torch.stack([torch.full_like(a, 55.0), -2 * a, -2 * b]).view(1, 3, 1, -1)
    # High chroma, where G (eq. 4) is near 0 and h' near the hue of (a*, b*): Δh' stays within 180-181 degrees,
    # and hues near 5 and 185.5 degrees have their (wrapped) mean near 275.
    vivid, start = 3 * chroma + 40, torch.linspace(2.0, 8.0, 16, dtype=torch.float64)
    turned = torch.deg2rad(start + 180.5)
    near = torch.stack([torch.full_like(a, 50.0), vivid * torch.cos(torch.deg2rad(start)),
                        vivid * torch.sin(torch.deg2rad(start))]).view(1, 3, 1, -1)
    beyond = torch.stack([torch.full_like(a, 45.0), 0.8 * vivid * torch.cos(turned),
                          0.8 * vivid * torch.sin(turned)]).view(1, 3, 1, -1)
    # Hues in [0, 1) degrees (0 exactly where b* = 0) against their opposites: h' = 0 stays 0, not 360 (eq. 7), and
    # a pair exactly 180 degrees apart takes the mean of eq. 14's first case.
    low = torch.linspace(0.0, 0.9, 16, dtype=torch.float64)
    red = torch.stack([torch.full_like(a, 60.0), vivid * torch.cos(torch.deg2rad(low)),
                       vivid * torch.sin(torch.deg2rad(low))]).view(1, 3, 1, -1)
    green = torch.stack([torch.full_like(a, 40.0), -2 * red[0, 1, 0], -2 * red[0, 2, 0]]).view(1, 3, 1, -1)
    pairs = ((first, opposite), (opposite, first), (near, beyond), (beyond, near), (red, green), (green, red))
    for lab1, lab2 in pairs:
        np.testing.assert_allclose(delta_e00(lab1, lab2).numpy(), colour_delta_e(lab1, lab2), rtol=0, atol=1e-6)


def test_chromas_whose_product_is_one_are_not_achromatic():
    # C1' C2' = 1 (b* only, so C' = |b*| exactly): only a product of 0 makes eq. 10's Δh' = 0.
    lab1 = as_image([(50.0, 0.0, 1.0), (50.0, 0.0, 0.5), (70.0, 0.0, 4.0)])
    lab2 = as_image([(50.0, 0.0, -1.0), (55.0, 0.0, -2.0), (60.0, 0.0, 0.25)])
    np.testing.assert_allclose(delta_e00(lab1, lab2).numpy(), colour_delta_e(lab1, lab2), rtol=0, atol=1e-6)
