"""Fast Minimum-Norm (FMN) attack — Pintor et al., NeurIPS 2021 (arXiv:2102.12827), Algorithm 1."""

from __future__ import annotations

import math

import torch
from torch import nn

from edgewise.attacks.base import Callback, batch_view, check_attack_call
from edgewise.attacks.ddn import cosine_step_size
from edgewise.distances import lp
from edgewise.losses import is_adversarial, logit_margin
from edgewise.projections import project
from edgewise.validation import check_choice, check_fraction, check_logits, check_positive, check_starting_points

NORMS = ("l1", "l2", "linf")
_NORM_OF = {"l1": lp.l1, "l2": lp.l2, "linf": lp.linf}


def fmn(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "l2",
    steps: int = 100,
    step_size: float = 1.0,
    final_step_size: float | None = None,
    gamma: float = 0.05,
    final_gamma: float = 0.001,
    targeted: bool = False,
    starting_points: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Minimal ℓp adversarial examples by alternating an ε-step and a δ-step (FMN, Algorithm 1, sec. 2).

    The loss is the logit margin L = z_y − max_{j≠y} z_j (targeted: max_{j≠t} z_j − z_t), negative iff the
    input is adversarial (eq. 2). Each iteration k = 1..K makes one forward and one backward at x + δₖ₋₁:

    - best iterate (lines 9-10): if x + δₖ₋₁ is adversarial and ‖δₖ₋₁‖p < ‖δ*‖p, then δ* = δₖ₋₁;
    - ε-step (lines 5-12): adversarial: εₖ = min(εₖ₋₁ (1 − γₖ), ‖δ*‖p); not adversarial: εₖ = εₖ₋₁ (1 + γₖ)
      once an adversarial has been found, and before that the linear estimate of the distance to the boundary
      εₖ = ‖δₖ₋₁‖p + L / ‖∇L‖q (q the dual of p);
    - δ-step (lines 13-15): δₖ = δₖ₋₁ − αₖ ∇L / ‖∇L‖₂, projected onto {‖δ‖p ≤ εₖ} ∩ {x + δ ∈ [0, 1]}.

    γₖ and αₖ are cosine-annealed from γ₀ to γ_K and from α₀ to α_K (sec. 2.2). Where the paper projects onto
    the ε-ball and then clips to the box, the exact Euclidean projection onto their intersection is used
    (``edgewise.projections.project``), which is feasible too and never farther from the gradient step.
    Exactly ``steps`` forwards and backwards per sample; δ₀ = 0, ε₀ = 0, or, from ``starting_points`` x₀ (e.g.
    another attack's adversarial examples, which FMN then shrinks), δ₀ = x₀ − x and ε₀ = ‖δ₀‖p.

    Args:
        norm: p, one of "l1", "l2", "linf".
        steps: K, the number of iterations.
        step_size / final_step_size: α₀ and α_K (default α₀ / 100).
        gamma / final_gamma: γ₀ and γ_K, the relative change of ε (paper: 0.05 and 0.001).
        targeted: ``labels`` are targets.
        starting_points: x + δ₀ per sample, a tensor of the inputs' shape in [0, 1] (default: the inputs).
        generator: draws the direction used where the gradient is exactly 0 (drawn once).
        callback: ``callback(step, {"eps", "best_distance", "step_size", "gamma", "adversarial"})`` each step.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_choice("norm", norm, NORMS)
    check_positive("steps", steps, integer=True)
    check_positive("step_size", step_size)
    if final_step_size is not None:
        check_positive("final_step_size", final_step_size)
    check_fraction("gamma", gamma)
    check_fraction("final_gamma", final_gamma)
    if starting_points is not None:
        check_starting_points(starting_points, inputs)
    alpha_final = step_size / 100 if final_step_size is None else final_step_size
    distance = _NORM_OF[norm]
    dual = lp.DUAL_ORDER[norm]
    delta = torch.zeros_like(inputs) if starting_points is None else (starting_points - inputs).detach()
    eps = distance(inputs, inputs + delta)
    best_norm = torch.full_like(eps, math.inf)
    best_adv = inputs.clone()
    fallback = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
    for step in range(steps):
        delta.requires_grad_(True)
        logits = model(inputs + delta)
        if step == 0:
            check_logits(logits, labels)
        margin = logit_margin(logits, labels, targeted=targeted)
        (grad,) = torch.autograd.grad(margin.sum(), delta)
        delta, margin = delta.detach(), margin.detach()
        adversarial = is_adversarial(logits.detach(), labels, targeted=targeted)
        delta_norm = distance(inputs, inputs + delta)
        better = adversarial & (delta_norm < best_norm)                                 # lines 9-10
        best_norm = torch.where(better, delta_norm, best_norm)
        best_adv = torch.where(batch_view(better, inputs), inputs + delta, best_adv)
        gamma_k = cosine_step_size(step, steps, gamma, final_gamma)
        found = torch.isfinite(best_norm)
        # 1e-12 as adv-lib: a zero gradient (a masked model) gives a large but finite ε; finfo.tiny overflowed to inf
        dual_norm = grad.flatten(1).norm(p=dual, dim=1).clamp_min(1e-12)
        boundary = delta_norm + margin / dual_norm                                      # line 7
        eps = torch.where(adversarial, torch.minimum(eps * (1 - gamma_k), best_norm),   # line 12
                          torch.where(found, eps * (1 + gamma_k), boundary))            # lines 6-8
        grad_norm = grad.flatten(1).norm(p=2, dim=1)
        grad = torch.where(batch_view(grad_norm == 0, grad), fallback, grad)
        grad_norm = grad.flatten(1).norm(p=2, dim=1)
        alpha = cosine_step_size(step, steps, step_size, alpha_final)
        delta = delta - alpha * grad / batch_view(grad_norm, grad)                      # line 13
        delta = project(delta, inputs, norm=norm, eps=eps.clamp_min(0))                 # lines 14-15
        if callback is not None:
            callback(step, {"eps": eps, "best_distance": best_norm, "step_size": torch.full_like(eps, alpha),
                            "gamma": torch.full_like(eps, gamma_k), "adversarial": adversarial})
    return best_adv
