"""σ-zero minimal ℓ0 attack — Cinà et al., *σ-zero: Gradient-based Optimization of ℓ0-norm Adversarial
Examples* (ICLR 2025, arXiv:2402.01879), Algorithm 1.

ℓ0 is not differentiable; σ-zero minimizes a smooth surrogate of it next to the misclassification loss,

    min_δ  L(x + δ, y) + ℓ̂0(δ) / d,   ℓ̂0(δ) = Σᵢ δᵢ² / (δᵢ² + σ)   (eq. 3-4),   L = max(z_y − max_{j≠y} z_j, 0),

with d the number of input elements and σ = 10⁻³. Iteration i = 0, …, N − 1 (one forward and one backward):
the forward at x + δ tells whether it is adversarial and, if it is and has fewer changed elements than the best
so far, makes it the best; the gradient, normalized by its ℓ∞ norm, drives an Adam step of size ηᵢ; δ is clipped
to the box; η moves on to ηᵢ₊₁ (cosine annealing from η₀ to η₀ / 10); the threshold τ (one per sample) rises by
t·ηᵢ₊₁ if x + δ was adversarial at this iteration's forward and falls by t·ηᵢ₊₁ otherwise, clipped to [0, 1];
every |δⱼ| < τ is set to 0, which is what makes δ sparse.

Where Algorithm 1 is silent the authors' code (github.com/sigma0-advx/sigma-zero, ``sigma_zero_attack.py``)
decides: the step is Adam's (torch's, β = 0.9, 0.999, ε = 10⁻⁸, bias-corrected) on the normalized gradient; the
schedule is torch's ``CosineAnnealingLR`` with T_max = N, η_min = η₀ / 10, stepped after Adam's step, and τ moves by
the rate it has just stepped to. adv-lib 0.2.8's port lags that schedule by one step (its iteration i steps with
ηᵢ₋₁ and moves τ by t·ηᵢ); edgewise keeps the authors' order. The two agree otherwise; measured on held-out
Fashion-MNIST images their per-image ℓ0 differ by floating-point rounding alone (see docs/attacks.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgewise.attacks.base import Callback, batch_view, check_attack_call
from edgewise.distances import lp
from edgewise.losses import is_adversarial, logit_margin
from edgewise.validation import check_choice, check_fraction, check_logits, check_positive, check_starting_points

_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_FINAL_FRACTION = 0.1
"""η_min / η₀ of the cosine schedule (the authors' ``eta_min = lr / 10``)."""


def l0_surrogate(delta: torch.Tensor, sigma: float) -> torch.Tensor:
    """ℓ̂0(δ) / d = mean over elements of δᵢ² / (δᵢ² + σ), per sample (eq. 4, normalized)."""
    square = delta.square()
    return (square / (square + sigma)).flatten(1).mean(1)


def normalized(gradient: torch.Tensor) -> torch.Tensor:
    """∇ / ‖∇‖∞ per sample (Algorithm 1's normalization; a zero gradient stays zero)."""
    scale = gradient.flatten(1).abs().amax(1).clamp_min(1e-12)
    return gradient / batch_view(scale, gradient)


def adam_direction(gradient: torch.Tensor, first_moment: torch.Tensor, second_moment: torch.Tensor,
                   step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(m̂ / (√v̂ + ε), m, v) after Adam's update at ``step`` (0-based; Kingma & Ba 2015, Algorithm 1): the
    moments m, v are exponential averages of the gradient and its square, m̂ and v̂ their bias-corrected values.
    The parameter moves by −η times the direction."""
    first_moment = _BETAS[0] * first_moment + (1 - _BETAS[0]) * gradient
    second_moment = _BETAS[1] * second_moment + (1 - _BETAS[1]) * gradient.square()
    corrected = first_moment / (1 - _BETAS[0] ** (step + 1))
    denominator = (second_moment / (1 - _BETAS[1] ** (step + 1))).sqrt() + _ADAM_EPS
    return corrected / denominator, first_moment, second_moment


def cosine_step_size(step: int, steps: int, step_size: float) -> float:
    """ηᵢ = η_min + (η₀ − η_min)(1 + cos(π i / N)) / 2, η_min = η₀ / 10: η₀ at i = 0, η_min at i = N."""
    final = _FINAL_FRACTION * step_size
    return final + (step_size - final) * (1 + math.cos(math.pi * step / steps)) / 2


def adapted_threshold(threshold: torch.Tensor, adversarial: torch.Tensor, change: float) -> torch.Tensor:
    """τ + t·η where the point was adversarial, τ − t·η where not (``change`` = t·η), clipped to [0, 1]."""
    return (threshold + torch.where(adversarial, change, -change)).clamp(0, 1)


def sparsified(delta: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """δ ⊙ 𝟙(|δ| ≥ τ) with one τ per sample (Algorithm 1's projection)."""
    return torch.where(delta.abs() < batch_view(threshold, delta), 0, delta)


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
    starting_points: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Minimal ℓ0 adversarial examples by σ-zero (Algorithm 1).

    Budget: exactly ``steps`` forwards and backwards per sample. Returned per sample: the adversarial iterate of
    fewest changed elements (the first one of them), or the original input if none was adversarial.

    Args:
        norm: "l0" only; the keyword tells the command line and the benchmark which distance to measure.
        steps: N. step_size: η₀ (annealed to η₀ / 10). sigma: σ of the ℓ0 surrogate. threshold: τ₀.
        threshold_step: t, τ moves by t·η per step.
        targeted: ``labels`` are targets (L = max(max_{j≠t} z_j − z_t, 0); the paper is untargeted).
        starting_points: x + δ₀ per sample, a tensor of the inputs' shape in [0, 1] (default: the inputs, δ₀ = 0).
            From another attack's adversarial examples σ-zero starts at their support and sparsifies it further
            (the authors' code offers the same start, ``starting_point='adversarial'``).
        generator: unused (σ-zero is deterministic), accepted for the common interface.
        callback: ``callback(step, {"l0", "best_l0", "threshold", "step_size", "adversarial"})`` each step:
            the ℓ0 and adversarial flag of the point this step evaluated, the best ℓ0 so far, and the τ and η
            the step leaves for the next one.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_choice("norm", norm, ("l0",))
    check_positive("steps", steps, integer=True)
    check_positive("step_size", step_size)
    check_positive("sigma", sigma)
    check_fraction("threshold", threshold)
    check_positive("threshold_step", threshold_step)
    if starting_points is not None:
        check_starting_points(starting_points, inputs)
    delta = torch.zeros_like(inputs) if starting_points is None else (starting_points - inputs).detach()
    first_moment = torch.zeros_like(inputs)
    second_moment = torch.zeros_like(inputs)
    tau = torch.full((inputs.shape[0],), float(threshold), dtype=inputs.dtype, device=inputs.device)
    best_l0 = torch.full_like(tau, math.inf)
    best_adv = inputs.clone()
    for step in range(steps):
        delta.requires_grad_(True)
        logits = model(inputs + delta)
        if step == 0:
            check_logits(logits, labels)
        # eq. 3: the margin loss (0 once adversarial) plus the normalized ℓ0 surrogate of eq. 4.
        loss = logit_margin(logits, labels, targeted=targeted).clamp_min(0) + l0_surrogate(delta, sigma)
        (gradient,) = torch.autograd.grad(loss.sum(), delta)
        delta = delta.detach()
        adversarial = is_adversarial(logits.detach(), labels, targeted=targeted)
        size = lp.l0(inputs, inputs + delta)
        better = adversarial & (size < best_l0)
        best_l0 = torch.where(better, size, best_l0)
        best_adv = torch.where(batch_view(better, inputs), inputs + delta, best_adv)
        direction, first_moment, second_moment = adam_direction(normalized(gradient), first_moment, second_moment,
                                                                step)
        eta = cosine_step_size(step, steps, step_size)
        delta = (inputs + delta - eta * direction).clamp(0, 1) - inputs
        eta = cosine_step_size(step + 1, steps, step_size)
        tau = adapted_threshold(tau, adversarial, threshold_step * eta)
        delta = sparsified(delta, tau)
        if callback is not None:
            callback(step, {"l0": size, "best_l0": best_l0, "threshold": tau,
                            "step_size": torch.full_like(tau, eta), "adversarial": adversarial})
    return best_adv
