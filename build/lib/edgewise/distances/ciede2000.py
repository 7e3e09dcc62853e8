"""CIEDE2000 color difference (Sharma, Wu & Dalal, 2005) and its image-level version of the ALMA paper.

``delta_e00(lab1, lab2)`` is the per-pixel ΔE00 of G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference
formula: implementation notes, supplementary test data, and mathematical observations", Color Research &
Application 30(1), 2005, eqs. (1)-(22), with k_L = k_C = k_H = 1. It matches the 34 test pairs published there and
``colour.delta_E(lab1, lab2, method="CIE 2000")`` (colour-science 0.4).

``ciede2000(reference, perturbed)`` is the image distance of the ALMA paper (Rony et al., arXiv:2011.11857, sec. 2,
"the image level accumulated version" of PerC-AL, Zhao et al. 2020): the ℓ2 norm over pixels of the per-pixel ΔE00
between the CIELAB images (``edgewise.color.rgb_to_lab``, appendix B).

Color conversion: we follow the colour-science definition (D65 white on the scale of XYZ, white → L* = 100).
adv-lib 0.2.8 (the ALMA authors' library, ``adv_lib.utils.color_conversions.rgb_to_cielab``) divides XYZ in [0, 1]
by the white (95.0489, 100, 108.884) given for XYZ in [0, 100]: white gets L* ≈ 9 instead of 100 and its CIEDE2000
under-measures image differences by about 5×. The PerC-AL code has errors in values and gradients (ALMA paper,
sec. 5, footnote 3). Both are bugs of those codes, not of the formula; we follow the equations.
"""

from __future__ import annotations

import math

import torch

from edgewise.color import rgb_to_lab

_25_POW_7 = 25.0**7


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt with gradient 0 instead of inf * 0 = NaN where x == 0 (and x clamped at 0 against round-off)."""
    # Trap: sqrt'(0) = inf; take the root of a strictly positive stand-in and mask the zero case.
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1).sqrt(), 0)


def _hue(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Hue angle h' = atan2(b, a') in degrees, in [0, 360); 0 where a' = b = 0 (eq. 7)."""
    # Trap: atan2's gradient at (0, 0) is 0 / 0 = NaN. Feed (1, 0) in its place and set the hue to 0 there,
    # as eq. 7 does (the gradient there is then 0 instead of NaN).
    zero = (a == 0) & (b == 0)
    angle = torch.rad2deg(torch.atan2(torch.where(zero, 0, b), torch.where(zero, 1, a)))
    # Hue wrap: atan2 is in (-180, 180]; eq. 7 wants [0, 360).
    return torch.where(angle < 0, angle + 360, angle)


def _cos(degrees: torch.Tensor) -> torch.Tensor:
    return torch.cos(torch.deg2rad(degrees))


def _squared_terms(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """ΔE00² per pixel (the radicand of eq. 22), for ``(*, 3, H, W)`` CIELAB images."""
    L1, a1, b1 = lab1.unbind(-3)
    L2, a2, b2 = lab2.unbind(-3)

    # Step 1: C*, G, a', C', h' (eqs. 2-7).
    C_mean = (_safe_sqrt(a1 * a1 + b1 * b1) + _safe_sqrt(a2 * a2 + b2 * b2)) / 2  # eqs. 2-3
    C_mean7 = C_mean.pow(7)
    G = 0.5 * (1 - _safe_sqrt(C_mean7 / (C_mean7 + _25_POW_7)))  # eq. 4
    a1p, a2p = (1 + G) * a1, (1 + G) * a2  # eq. 5
    C1p, C2p = _safe_sqrt(a1p * a1p + b1 * b1), _safe_sqrt(a2p * a2p + b2 * b2)  # eq. 6
    h1p, h2p = _hue(b1, a1p), _hue(b2, a2p)  # eq. 7

    # Step 2: ΔL', ΔC', Δh', ΔH' (eqs. 8-11).
    dL = L2 - L1
    dC = C2p - C1p
    chroma_product = C1p * C2p
    achromatic = chroma_product == 0
    dh = h2p - h1p
    # Hue wrap (eq. 10): bring Δh' into [-180, 180]; 0 when either color is achromatic.
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(achromatic, 0, dh)
    dH = 2 * _safe_sqrt(chroma_product) * torch.sin(torch.deg2rad(dh) / 2)  # eq. 11

    # Step 3: means, weighting functions and the rotation term (eqs. 12-22).
    L_mean = (L1 + L2) / 2  # eq. 12
    Cp_mean = (C1p + C2p) / 2  # eq. 13
    h_sum = h1p + h2p
    # Hue wrap (eq. 14): the mean of two angles more than 180 apart is taken the short way round; when either
    # color is achromatic the mean is the plain sum (the other hue, or 0).
    far = (h1p - h2p).abs() > 180
    h_mean = torch.where(far, torch.where(h_sum < 360, h_sum + 360, h_sum - 360), h_sum) / 2
    h_mean = torch.where(achromatic, h_sum, h_mean)
    T = (1 - 0.17 * _cos(h_mean - 30) + 0.24 * _cos(2 * h_mean) + 0.32 * _cos(3 * h_mean + 6)
         - 0.20 * _cos(4 * h_mean - 63))  # eq. 15
    d_theta = 30 * torch.exp(-(((h_mean - 275) / 25) ** 2))  # eq. 16
    Cp_mean7 = Cp_mean.pow(7)
    R_C = 2 * _safe_sqrt(Cp_mean7 / (Cp_mean7 + _25_POW_7))  # eq. 17
    L50 = (L_mean - 50) ** 2
    S_L = 1 + 0.015 * L50 / torch.sqrt(20 + L50)  # eq. 18
    S_C = 1 + 0.045 * Cp_mean  # eq. 19
    S_H = 1 + 0.015 * Cp_mean * T  # eq. 20
    R_T = -torch.sin(2 * d_theta * (math.pi / 180)) * R_C  # eq. 21

    lightness, chroma, hue = dL / S_L, dC / S_C, dH / S_H
    return lightness**2 + chroma**2 + hue**2 + R_T * chroma * hue  # eq. 22, squared


def delta_e00(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """Per-pixel CIEDE2000 ΔE00 between CIELAB images ``(*, 3, H, W)`` → ``(*, H, W)`` (Sharma et al. 2005)."""
    return _safe_sqrt(_squared_terms(lab1, lab2))


def _as_rgb(name: str, image: torch.Tensor) -> torch.Tensor:
    """Gray images ``(B, 1, H, W)`` are sRGB with R = G = B; color images ``(B, 3, H, W)`` pass through."""
    if image.dim() != 4 or image.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have shape (B, 1 or 3, H, W), got {tuple(image.shape)}")
    return image.expand(-1, 3, -1, -1)


def ciede2000(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """ℓ2 norm over pixels of the per-pixel ΔE00 between two sRGB batches in [0, 1] → ``(B,)``.

    Gray images (one channel) are compared as sRGB colors with R = G = B. The norm is taken as the root of the sum
    of the squared per-pixel differences (eq. 22 squared), so no per-pixel root is differentiated; the gradient is
    0, not NaN, where ``perturbed == reference``.
    """
    if reference.shape != perturbed.shape:
        raise ValueError(f"perturbed must have the shape of reference {tuple(reference.shape)}, "
                         f"got {tuple(perturbed.shape)}")
    lab_reference = rgb_to_lab(_as_rgb("reference", reference))
    lab_perturbed = rgb_to_lab(_as_rgb("perturbed", perturbed))
    return _safe_sqrt(_squared_terms(lab_reference, lab_perturbed).flatten(1).sum(1))
