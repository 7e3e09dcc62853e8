"""Distances between a reference batch and a perturbed batch, per sample, and their registry.

``edgewise.distances.get("l2")(reference)(perturbed) -> (B,)``. Argument order is always
``(reference, perturbed)``. ``names()`` lists the registry; ``register`` adds a user factory.
"""

from edgewise.distances.ciede2000 import ciede2000
from edgewise.distances.lp import l0, l1, l2, linf
from edgewise.distances.lpips import lpips
from edgewise.distances.registry import DistanceFn, Entry, Factory, entry, get, names, pairwise, register
from edgewise.distances.ssim import ssim

register("l0", pairwise(l0), description="number of changed elements", matches="numpy count_nonzero",
         differentiable=False)
register("l1", pairwise(l1), description="ℓ1 norm of the difference", matches="torch.linalg.vector_norm(ord=1)")
register("l2", pairwise(l2), description="ℓ2 norm of the difference", matches="torch.linalg.vector_norm(ord=2)")
register("linf", pairwise(linf), description="ℓ∞ norm of the difference",
         matches="torch.linalg.vector_norm(ord=inf)", differentiable=False)
register("ciede2000", pairwise(ciede2000), description="ℓ2 norm over pixels of the CIEDE2000 ΔE00 (sRGB, D65)",
         matches="per pixel: colour.delta_E(colour.XYZ_to_Lab(colour.sRGB_to_XYZ(x)), ..., method='CIE 2000') "
                 "(colour-science 0.4) and the 34 pairs of Sharma, Wu & Dalal (2005)")
register("ssim", pairwise(ssim), description="1 - SSIM, Gaussian window 11, sigma 1.5, mean over channels",
         matches="1 - skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, "
                 "use_sample_covariance=False, data_range=1.0, channel_axis=0)")
register("lpips", lpips, description="LPIPS (AlexNet by default; net='vgg'; calibrated=False; features=model)",
         matches="lpips.LPIPS(net=net, lpips=calibrated)(x, y, normalize=True) of the lpips package 0.1.4 with the "
                 "same weights; features=model: the same uncalibrated formula on the model's ReLU activations")

__all__ = ["DistanceFn", "Entry", "Factory", "ciede2000", "entry", "get", "l0", "l1", "l2", "linf", "lpips", "names",
           "pairwise", "register", "ssim"]
