"""σ-zero minimal ℓ0 attack — Cinà et al., *σ-zero: Gradient-based Optimization of ℓ0-norm Adversarial
Examples* (ICLR 2025, arXiv:2402.01879), Algorithm 1.

ℓ0 is not differentiable; σ-zero minimizes a smooth surrogate of it next to the misclassification loss,

    min_δ  L(x + δ, y) + ℓ̂0(δ) / d,   ℓ̂0(δ) = Σᵢ δᵢ² / (δᵢ² + σ)   (eq. 3-4),   L = max(z_y − max_{j≠y} z_j, 0),

with d the number of input elements and σ = 10⁻³. Each iteration (one forward and one backward): the gradient,
normalized by its ℓ∞ norm, drives an Adam step of size η (cosine-annealed from η₀ to η₀/10); δ is clipped to the
box; then the adaptive threshold τ (one per sample) is raised by t·η if x + δ was adversarial and lowered by t·η
otherwise (clipped to [0, 1]), and every |δᵢ| < τ is set to 0, which is what makes δ sparse. The smallest-ℓ0
adversarial iterate seen is returned. Adam's moments (β = 0.9, 0.999) are those of the authors' implementation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgewise.attacks.base import Callback, batch_view, check_attack_call
from edgewise.distances import lp
from edgewise.losses import is_adversarial, logit_margin
from edgewise.validation import check_choice, check_fraction, check_logits, check_positive

_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def l0_surrogate(delta: torch.Tensor, sigma: float) -> torch.Tensor:
    """ℓ̂0(δ) / d = mean over elements of δᵢ² / (δᵢ² + σ), per sample (eq. 4, normalized)."""
    square = delta.square()
    return (square / (square + sigma)).flatten(1).mean(1)


def sigma_zero(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "l0",
    steps: int = 1000,
    step_size: float = 1.0,
    sigma: float = 1e-3,
    threshold: float = 0.3,
    threshold_step: float = 0.01,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Minimal ℓ0 adversarial examples by σ-zero (Algorithm 1).

    Budget: exactly ``steps`` forwards and backwards per sample. Returned per sample: the adversarial iterate of
    fewest changed elements, or the original input if none was adversarial.

    Args:
        norm: "l0" only; the keyword tells the command line and the benchmark which distance to measure.
        steps: N. step_size: η₀ (annealed to η₀ / 10). sigma: σ of the ℓ0 surrogate. threshold: τ₀.
        threshold_step: t, τ moves by t·η per step.
        targeted: ``labels`` are targets (L = max(max_{j≠t} z_j − z_t, 0); the paper is untargeted).
        generator: unused (σ-zero is deterministic), accepted for the common interface.
        callback: ``callback(step, {"l0", "best_l0", "threshold", "step_size", "adversarial"})`` each step.
    """
    check_attack_call(model, inputs, labels, generator=generator, callback=callback)
    check_choice("norm", norm, ("l0",))
    check_positive("steps", steps, integer=True)
    check_positive("step_size", step_size)
    check_positive("sigma", sigma)
    check_fraction("threshold", threshold)
    check_positive("threshold_step", threshold_step)
    batch = inputs.shape[0]
    delta = torch.zeros_like(inputs)
    first_moment = torch.zeros_like(inputs)
    second_moment = torch.zeros_like(inputs)
    tau = torch.full((batch,), float(threshold), dtype=inputs.dtype, device=inputs.device)
    best_l0 = torch.full_like(tau, math.inf)
    best_adv = inputs.clone()
    eta = step_size
    for step in range(steps):
        delta.requires_grad_(True)
        logits = model(inputs + delta)
        if step == 0:
            check_logits(logits, labels)
        loss = logit_margin(logits, labels, targeted=targeted).clamp_min(0) + l0_surrogate(delta, sigma)
        (gradient,) = torch.autograd.grad(loss.sum(), delta)
        delta = delta.detach()
        adversarial = is_adversarial(logits.detach(), labels, targeted=targeted)
        size = lp.l0(inputs, inputs + delta)
        better = adversarial & (size < best_l0)
        best_l0 = torch.where(better, size, best_l0)
        best_adv = torch.where(batch_view(better, inputs), inputs + delta, best_adv)
        scale = gradient.flatten(1).abs().amax(1).clamp_min(1e-12)
        gradient = gradient / batch_view(scale, gradient)
        # Adam with bias correction (Kingma & Ba 2015), learning rate η.
        first_moment = _BETAS[0] * first_moment + (1 - _BETAS[0]) * gradient
        second_moment = _BETAS[1] * second_moment + (1 - _BETAS[1]) * gradient.square()
        corrected = first_moment / (1 - _BETAS[0] ** (step + 1))
        denominator = (second_moment / (1 - _BETAS[1] ** (step + 1))).sqrt() + _ADAM_EPS
        delta = (inputs + delta - eta * corrected / denominator).clamp(0, 1) - inputs
        eta = step_size / 10 + 0.9 * step_size * (1 + math.cos(math.pi * (step + 1) / steps)) / 2
        tau = (tau + torch.where(adversarial, threshold_step * eta, -threshold_step * eta)).clamp(0, 1)
        delta = torch.where(delta.abs() < batch_view(tau, delta), 0, delta)
        if callback is not None:
            callback(step, {"l0": size, "best_l0": best_l0, "threshold": tau,
                            "step_size": torch.full_like(tau, eta), "adversarial": adversarial})
    return best_adv
