"""1 − SSIM (Wang et al. 2004), the SSIM distance of the ALMA paper (Rony et al., arXiv:2011.11857, appendix G).

SSIM with an 11 × 11 Gaussian window (σ = 1.5, truncated at 3.5 σ), K1 = 0.01, K2 = 0.03, data range 1, weighted
(population) statistics; the SSIM map is averaged over the pixels whose window lies inside the image (the ``valid``
part, which is what scikit-image keeps after cropping its reflect-padded map) and over the channels (the ALMA paper
"considered the average SSIM over the color channels"). It matches ``1 - skimage.metrics.structural_similarity(x, y,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0)``.
"""

from __future__ import annotations

import torch
from kornia.filters import filter2d_separable, get_gaussian_kernel1d

WINDOW = 11  # 2 * int(3.5 * sigma + 0.5) + 1: scikit-image's (scipy's) Gaussian truncated at 3.5 σ
SIGMA = 1.5
K1, K2 = 0.01, 0.03
DATA_RANGE = 1.0


def _blur(images: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted local mean of every channel, on valid windows only: ``(B, C, H - 10, W - 10)``."""
    kernel = get_gaussian_kernel1d(WINDOW, SIGMA, device=images.device, dtype=images.dtype)
    return filter2d_separable(images, kernel, kernel, padding="valid")


def ssim_map(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """The SSIM map ``(B, C, H - 10, W - 10)`` between two batches ``(B, C, H, W)`` in [0, 1]."""
    if reference.dim() != 4 or reference.shape[-1] < WINDOW or reference.shape[-2] < WINDOW:
        raise ValueError(f"reference must have shape (B, C, H, W) with H, W >= {WINDOW}, got {tuple(reference.shape)}")
    if perturbed.shape != reference.shape:
        raise ValueError(f"perturbed must have the shape of reference {tuple(reference.shape)}, "
                         f"got {tuple(perturbed.shape)}")
    C1, C2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    x, y = reference, perturbed
    mu_x, mu_y = _blur(x), _blur(y)
    var_x = _blur(x * x) - mu_x * mu_x
    var_y = _blur(y * y) - mu_y * mu_y
    cov_xy = _blur(x * y) - mu_x * mu_y
    # Both denominators are at least C1 * C2 > 0: no division trap, smooth everywhere.
    return ((2 * mu_x * mu_y + C1) * (2 * cov_xy + C2)) / ((mu_x * mu_x + mu_y * mu_y + C1) * (var_x + var_y + C2))


def ssim(reference: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """1 − mean SSIM over pixels and channels, per sample → ``(B,)``; 0 for identical images."""
    return 1 - ssim_map(reference, perturbed).flatten(1).mean(1)
