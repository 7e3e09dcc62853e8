"""Decoupled Direction and Norm (DDN) ℓ2 attack — Rony et al., CVPR 2019 (arXiv:1811.09600), Algorithm 1."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from edgewise.attacks.base import Callback, batch_view, check_attack_call, check_levels, quantize
from edgewise.losses import is_adversarial
from edgewise.validation import check_fraction, check_logits, check_positive


def cosine_step_size(step: int, steps: int, initial: float, final: float) -> float:
    """α at iteration ``step`` (0-based): cosine annealing from ``initial`` to ``final`` (DDN paper, sec. 4)."""
    return final + (initial - final) * (1 + math.cos(math.pi * step / steps)) / 2


def ddn(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = 100,
    gamma: float = 0.05,
    init_norm: float = 1.0,
    step_size: float = 1.0,
    final_step_size: float = 0.01,
    levels: int | None = 256,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Minimal ℓ2 adversarial examples by decoupling the direction and the norm of the perturbation.

    Each iteration k (Algorithm 1): one forward/backward at x̃ₖ₋₁ gives g = m ∇J(x̃ₖ₋₁) (J the cross-entropy,
    m = +1 untargeted, -1 targeted), normalized to length α (line 5) and added to δ (line 6); the norm ε is
    multiplied by (1 - γ) if x̃ₖ₋₁ is adversarial and by (1 + γ) otherwise (lines 7-11); δ is projected onto the
    ε-sphere (line 12), x̃ₖ = clip(x + δ, 0, 1) (line 13), and quantized to ``levels`` levels inside the loop
    (sec. 3: "quantizing the image in each iteration, to ensure the attack is a valid image"). The adversarial
    iterate of lowest norm is returned (line 15). Exactly ``steps`` forwards and backwards per sample.

    Step-size schedule (default): α annealed by a cosine from ``step_size`` = 1 to ``final_step_size`` = 0.01
    over the iterations, the setting of the paper's experiments (sec. 4). Large early steps let ε grow quickly
    toward the boundary; small late steps let the (1 ± γ) oscillation refine the norm around it (sec. 3).

    Args:
        steps: K, the number of iterations. gamma: γ, the factor that changes ε. init_norm: ε₀.
        step_size / final_step_size: α at the first and the last iteration.
        levels: quantization levels inside the loop (256 = 8 bits), None to disable.
        targeted: ``labels`` are targets. generator: draws a random direction at each step where a gradient is
            exactly 0.
        callback: ``callback(step, {"norm", "best_distance", "step_size", "adversarial"})`` each step.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_positive("steps", steps, integer=True)
    check_fraction("gamma", gamma)
    check_positive("init_norm", init_norm)
    check_positive("step_size", step_size)
    check_positive("final_step_size", final_step_size)
    check_levels(levels)
    multiplier = -1.0 if targeted else 1.0
    # The largest ℓ2 distance inside the box around x: ε never needs to exceed it.
    worst_norm = torch.maximum(inputs, 1 - inputs).flatten(1).norm(p=2, dim=1)
    norm = torch.full_like(worst_norm, init_norm)
    adv = inputs.clone()
    best_norm = torch.full_like(worst_norm, math.inf)
    best_adv = inputs.clone()
    for step in range(steps):
        adv.requires_grad_(True)
        logits = model(adv)
        if step == 0:
            check_logits(logits, labels)
        loss = multiplier * F.cross_entropy(logits, labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach()
        adversarial = is_adversarial(logits.detach(), labels, targeted=targeted)
        delta = adv - inputs
        distance = delta.flatten(1).norm(p=2, dim=1)
        better = adversarial & (distance < best_norm)
        best_norm = torch.where(better, distance, best_norm)
        best_adv = torch.where(batch_view(better, inputs), adv, best_adv)
        alpha = cosine_step_size(step, steps, step_size, final_step_size)
        grad_norm = grad.flatten(1).norm(p=2, dim=1)
        vanished = grad_norm == 0
        if bool(vanished.any()):
            # A zero gradient has no direction (a saturated softmax, a quantized input): the step is α·r with
            # r ~ N(0, I) drawn anew at each such step, not normalized, as the authors' code (adv-lib) does: its
            # length α√d dwarfs ε early on, so the projection of line 12 makes x + δ a fresh random point of the
            # ε-sphere (a random search where the gradient is blind), and a finer one as α anneals.
            fallback = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
            grad = torch.where(batch_view(vanished, grad), fallback, grad)
            grad_norm = torch.where(vanished, 1.0, grad_norm)
        delta.add_(grad * batch_view(alpha / grad_norm, grad))                          # lines 5-6
        norm = torch.where(adversarial, norm * (1 - gamma), norm * (1 + gamma))         # lines 7-11
        norm = torch.minimum(norm, worst_norm)
        delta_norm = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        delta.mul_(batch_view(norm / delta_norm, delta))                                 # line 12
        # line 13, then 8-bit quantization; the iterate itself is kept on the grid, so returned points are too
        adv = quantize(delta.add_(inputs).clamp_(0, 1), levels)
        if callback is not None:
            callback(step, {"norm": norm, "best_distance": best_norm, "step_size": torch.full_like(norm, alpha),
                            "adversarial": adversarial})
    return best_adv
