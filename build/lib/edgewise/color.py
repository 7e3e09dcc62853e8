"""sRGB ⇄ CIELAB (D65), differentiable and NaN-free on all of [0, 1].

The chain is the one of the ALMA paper, appendix B (Rony et al., arXiv:2011.11857): sRGB in [0, 1] → linear RGB
(the sRGB transfer function, IEC 61966-2-1) → XYZ (eq. 13) → CIELAB (eq. 14, 15) with the D65 reference white.

Constants follow colour-science 0.4 (``colour.XYZ_to_Lab(colour.sRGB_to_XYZ(rgb))``), which we match to 1e-4:

- the RGB → XYZ matrix is the one published in IEC 61966-2-1 (four decimals). Eq. 13 of the paper prints the same
  matrix derived from the primaries at seven decimals with a slightly different white; the two differ by at most
  2e-4 per entry, up to 0.025 in L*a*b*, so a library cannot match both: we match the standard and colour-science.
- the reference white (Xn, Yn, Zn) is D65 from its CIE 1931 chromaticity (x, y) = (0.3127, 0.3290), with Yn = 1 on
  the SAME scale as XYZ (Y of white = 1), so white has L* = 100. The paper writes (95.0489, 100, 108.8840), i.e. XYZ
  in [0, 100]; dividing XYZ in [0, 1] by those numbers (as adv-lib 0.2.8 does) gives white L* ≈ 9.
"""

from __future__ import annotations

import torch

# IEC 61966-2-1 sRGB (linear) → XYZ, rows X, Y, Z (ALMA eq. 13 at the standard's precision).
RGB_TO_XYZ = ((0.4124, 0.3576, 0.1805),
              (0.2126, 0.7152, 0.0722),
              (0.0193, 0.1192, 0.9505))

# D65 white from (x, y) = (0.3127, 0.3290): X = x / y, Y = 1, Z = (1 - x - y) / y.
WHITE_D65 = (0.3127 / 0.3290, 1.0, (1.0 - 0.3127 - 0.3290) / 0.3290)

_DELTA = 6 / 29  # δ of eq. 15
_DECODE_KNEE = 0.04045  # sRGB value below which the transfer function is linear
_ENCODE_KNEE = 0.0031308  # the same knee in linear RGB


def _check_rgb(name: str, image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {image.dtype}")
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (*, 3, H, W), got {tuple(image.shape)}")


def _matrix(rows: tuple[tuple[float, ...], ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Multiply the channel vector of every pixel of ``(*, 3, H, W)`` by ``matrix``."""
    return torch.einsum("mc,...chw->...mhw", matrix, image)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding transfer function (IEC 61966-2-1), element-wise."""
    # Trap: the power branch is evaluated everywhere by torch.where, and x ** 2.4 has a NaN gradient for x < 0.
    # Clamp its argument to the knee so the unused branch stays finite (its gradient is masked to 0 anyway).
    power = ((rgb.clamp(min=_DECODE_KNEE) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb <= _DECODE_KNEE, rgb / 12.92, power)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """The sRGB encoding transfer function, inverse of :func:`srgb_to_linear`."""
    # Trap: x ** (1 / 2.4) has an infinite gradient at 0; clamp the unused branch's argument to the knee.
    power = 1.055 * linear.clamp(min=_ENCODE_KNEE) ** (1 / 2.4) - 0.055
    return torch.where(linear <= _ENCODE_KNEE, linear * 12.92, power)


def _f(t: torch.Tensor) -> torch.Tensor:
    """Eq. 15: cube root above δ³, the linear segment below."""
    # Trap: the cube root has an infinite gradient at 0 (and NaN below); torch.where evaluates both branches and
    # 0 * inf = NaN, so the cube root only sees values clamped to at least δ³.
    return torch.where(t > _DELTA**3, t.clamp(min=_DELTA**3).pow(1 / 3), t / (3 * _DELTA**2) + 4 / 29)


def _f_inverse(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t > _DELTA, t.pow(3), 3 * _DELTA**2 * (t - 4 / 29))


def rgb_to_xyz(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(*, 3, H, W)`` in [0, 1] → CIE XYZ on the scale where white has Y = 1 (eq. 13)."""
    _check_rgb("rgb", rgb)
    return _apply(_matrix(RGB_TO_XYZ, rgb), srgb_to_linear(rgb))


def xyz_to_lab(xyz: torch.Tensor) -> torch.Tensor:
    """CIE XYZ ``(*, 3, H, W)`` (white Y = 1) → CIELAB with the D65 white (eq. 14)."""
    _check_rgb("xyz", xyz)
    white = torch.tensor(WHITE_D65, dtype=xyz.dtype, device=xyz.device).view(3, 1, 1)
    fx, fy, fz = _f(xyz / white).unbind(-3)
    return torch.stack((116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)), -3)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``(*, 3, H, W)`` in [0, 1] → CIELAB ``(*, 3, H, W)`` (L* in [0, 100], white → L* = 100).

    Matches ``colour.XYZ_to_Lab(colour.sRGB_to_XYZ(rgb))`` (colour-science 0.4) to 1e-4. Differentiable with finite
    gradients everywhere in [0, 1], including at 0.

    >>> round(float(rgb_to_lab(torch.ones(3, 1, 1))[0]), 6)
    100.0
    """
    return xyz_to_lab(rgb_to_xyz(rgb))


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB ``(*, 3, H, W)`` → sRGB, the inverse of :func:`rgb_to_lab` (not clipped to [0, 1])."""
    _check_rgb("lab", lab)
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    white = torch.tensor(WHITE_D65, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    xyz = _f_inverse(torch.stack((fy + a / 500, fy, fy - b / 200), -3)) * white
    linear = _apply(torch.linalg.inv(_matrix(RGB_TO_XYZ, lab)), xyz)
    return linear_to_srgb(linear)
