"""Robust attack over data transformations: one δ per input that survives K transformations — Wang et al.
(NeurIPS 2021), sec. 3, supplement D.3 and Tables A4/A5.

Domain i is the model on the i-th transformation of the perturbed input: fᵢ(δ) = f(M(Tᵢ(x + δ)), y). The
transformations are differentiable (kornia), deterministic as in Table 7 / A5, or drawn afresh at every
evaluation as in Table A4 (``random=True``). ``strategy="average"`` is expectation over transformation (EOT).

Deterministic (D.3): hflip / vflip; brightness +0.1; gamma correction x^1.3; crop: the central 0.8 × 0.8 resized
back to the input size; rotation: 30° clockwise. Random: flips, brightness and gamma each applied with
probability 0.8; crop: a central fraction drawn uniformly in [0.6, 1.0]; rotation: uniform in [−10°, 10°].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from kornia.enhance import adjust_brightness, adjust_gamma
from kornia.geometry.transform import crop_and_resize, hflip, rotate, vflip

from edgewise.attacks.base import Callback
from edgewise.attacks.minmax.apgda import MinMaxResult, apgda, check_minmax_options, classifier_domain
from edgewise.attacks.minmax.ensemble import Model, check_models
from edgewise.losses import is_adversarial
from edgewise.projections import project
from edgewise.validation import check_bool, check_generator, check_inputs

PROBABILITY = 0.8
"""Probability of applying a random flip, brightness or gamma transformation (Table A4)."""

# Tables A4 / A5 of the supplement (20-step ℓ∞-APGDA over transformations): α = 1/2, β = 1/100, γ = 10. The
# supplement gives no other norm for these attacks; they take the ensemble values of D.2 (``DEFAULTS``).
TRANSFORM_DEFAULTS: dict[str, dict[str, float]] = {"linf": {"step_size": 1 / 2, "weight_step": 1 / 100, "gamma": 10.0}}


def _uniform(images: torch.Tensor, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    draw = torch.rand(images.shape[0], generator=generator, device=images.device, dtype=images.dtype)
    return low + (high - low) * draw


def _sometimes(transformed: torch.Tensor, images: torch.Tensor, random: bool,
               generator: torch.Generator | None) -> torch.Tensor:
    """``transformed`` (deterministic), or per sample with probability 0.8 (random)."""
    if not random:
        return transformed
    keep = torch.rand(images.shape[0], generator=generator, device=images.device) < PROBABILITY
    return torch.where(keep.view(-1, *([1] * (images.dim() - 1))), transformed, images)


def center_crop(images: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """The central ``fraction`` (B,) of each image, resized (bilinear) back to the input size."""
    height, width = images.shape[-2:]
    half_h, half_w = fraction * (height - 1) / 2, fraction * (width - 1) / 2
    cy, cx = (height - 1) / 2, (width - 1) / 2
    x1, x2, y1, y2 = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    boxes = torch.stack([torch.stack([x1, y1], 1), torch.stack([x2, y1], 1),
                         torch.stack([x2, y2], 1), torch.stack([x1, y2], 1)], 1)  # (B, 4, 2) corners
    return crop_and_resize(images, boxes, (height, width))


def identity(images: torch.Tensor, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    return images


def flip_horizontal(images: torch.Tensor, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    return _sometimes(hflip(images), images, random, generator)


def flip_vertical(images: torch.Tensor, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    return _sometimes(vflip(images), images, random, generator)


def brightness(images: torch.Tensor, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    return _sometimes(adjust_brightness(images, 0.1), images, random, generator)


def gamma_correction(images: torch.Tensor, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    return _sometimes(adjust_gamma(images, 1.3), images, random, generator)


def crop(images: torch.Tensor, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    fraction = (_uniform(images, 0.6, 1.0, generator) if random
                else torch.full(images.shape[:1], 0.8, dtype=images.dtype, device=images.device))
    return center_crop(images, fraction)


def rotation(images: torch.Tensor, random: bool, generator: torch.Generator | None) -> torch.Tensor:
    # kornia's positive angles turn counterclockwise: 30° clockwise is −30.
    angle = (_uniform(images, -10.0, 10.0, generator) if random
             else torch.full(images.shape[:1], -30.0, dtype=images.dtype, device=images.device))
    return rotate(images, angle)


Transform = Callable[[torch.Tensor, bool, "torch.Generator | None"], torch.Tensor]
TRANSFORMS: dict[str, Transform] = {
    "identity": identity, "hflip": flip_horizontal, "vflip": flip_vertical, "brightness": brightness,
    "gamma": gamma_correction, "crop": crop, "rotation": rotation,
}
"""Names (as in Tables A4/A5: ori, flh, flv, bri, gam, crop, rot) -> ``transform(images, random, generator)``."""


def apply_transform(name: str, images: torch.Tensor, *, random: bool = False,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Tᵢ(images) for the transformation ``name`` of ``TRANSFORMS`` (images (B, C, H, W) in [0, 1])."""
    if name not in TRANSFORMS:
        raise ValueError(f"transforms must be names among {sorted(TRANSFORMS)}, got {name!r}")
    return TRANSFORMS[name](images, random, generator)


def fooled_on_fresh_draws(model: Model, adv: torch.Tensor, labels: torch.Tensor, transforms: Sequence[str], *,
                          generator: torch.Generator, targeted: bool) -> torch.Tensor:
    """(B, K): whether ``adv`` fools ``model`` under a new random draw of each transformation. APGDA keeps the best
    of its T + 1 iterates judged on the draws each one met, the luckiest ones; a draw made after the choice says what
    the returned inputs do."""
    with torch.no_grad():
        return torch.stack([is_adversarial(model(apply_transform(name, adv, random=True, generator=generator)), labels,
                                           targeted=targeted) for name in transforms], 1)


def transform_attack(
    model: Model,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    transforms: Sequence[str] = ("identity", "hflip", "vflip", "brightness", "gamma", "crop", "rotation"),
    random: bool = False,
    norm: str = "linf",
    eps: float = 0.2,
    steps: int = 20,
    step_size: float | None = None,
    weight_step: float | None = None,
    gamma: float | None = None,
    strategy: str = "minmax",
    loss: str = "cw",
    kappa: float | None = None,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> MinMaxResult:
    """APGDA over data transformations (domain i = ``transforms[i]``), images (B, C, H, W).

    Args:
        model: M. transforms: names of ``TRANSFORMS`` (T₁..T_K). random: draw the transformations (Table A4).
        generator: the source of the random draws (``random=True``; None: a generator seeded with 0, never the
            global RNG).
        norm / eps / steps / step_size / weight_step / gamma / strategy / loss / kappa / targeted / callback:
            as in ``ensemble_attack`` (20 steps by default, D.2); "average" is EOT. For ℓ∞, None takes
            α = 1/2, β = 1/100, γ = 10 (``TRANSFORM_DEFAULTS``, Tables A4/A5).

    Returns:
        ``MinMaxResult``: ``adv`` (B, ...), ``weights`` (B, K), ``history`` (T + 1, B, K), ``fooled`` (B, K); with
        ``random``, ``fooled`` is judged on a fresh draw of each transformation (``fooled_on_fresh_draws``) and
        ``clean_fooled`` on the first draw at δ = 0.
    """
    check_inputs(inputs, labels)
    if inputs.dim() != 4:  # before the model runs: a conv model would fail inside torch on (B, H, W)
        raise ValueError(f"inputs must be images (B, C, H, W), got shape {tuple(inputs.shape)}")
    check_models([model], inputs, labels, callback, targeted=targeted, name="model")
    check_generator(generator, inputs.device)
    check_bool("random", random)
    if isinstance(transforms, str) or not isinstance(transforms, Sequence) or len(transforms) == 0:
        raise TypeError(f"transforms must be a non-empty list of names, got {transforms!r}")
    for name in transforms:
        if name not in TRANSFORMS:
            raise ValueError(f"transforms must be names among {sorted(TRANSFORMS)}, got {name!r}")
    check_minmax_options(norm=norm, eps=eps, steps=steps, strategy=strategy, loss=loss, kappa=kappa,
                         step_size=step_size, weight_step=weight_step, gamma=gamma)
    table = TRANSFORM_DEFAULTS.get(norm, {})
    step_size = table.get("step_size") if step_size is None else step_size
    weight_step = table.get("weight_step") if weight_step is None else weight_step
    gamma = table.get("gamma") if gamma is None else gamma
    draws = torch.Generator(inputs.device).manual_seed(0) if generator is None else generator

    def view(name: str, delta: torch.Tensor) -> torch.Tensor:
        return apply_transform(name, inputs + delta, random=random, generator=draws)

    domains = [classifier_domain(model, labels, partial(view, name), loss=loss, kappa=kappa, targeted=targeted)
               for name in transforms]
    result = apgda(domains, torch.zeros_like(inputs), constraint=partial(project, x=inputs, norm=norm, eps=eps),
                   compose=lambda delta: inputs + delta, norm=norm, eps=eps, steps=steps, step_size=step_size,
                   weight_step=weight_step, gamma=gamma, strategy=strategy, callback=callback)
    if random:
        result.fooled = fooled_on_fresh_draws(model, result.adv, labels, transforms, generator=draws,
                                              targeted=targeted)
    return result
