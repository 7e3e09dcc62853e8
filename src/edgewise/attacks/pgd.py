"""Projected gradient descent (PGD) budget attack — Madry et al., *Towards Deep Learning Models Resistant to
Adversarial Attacks* (ICLR 2018, arXiv:1706.06083), eq. (2) and sec. 2.1, for any ℓp ball of ``edgewise.projections``.

Each iteration: x̃ ← x + proj(δ + α ε d(∇δ L(x + δ, y))), with L the cross-entropy (or the C&W margin) to
maximize, d the steepest-ascent direction (sign for ℓ∞, the normalized gradient otherwise) and proj the exact
projection onto {‖δ‖p ≤ ε, x + δ ∈ [0, 1]}. Unlike the minimal attacks, PGD answers "is there an adversarial
within ε?": it is the attack of PGD adversarial training (Madry et al.) and of fixed-budget robust accuracy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgewise.attacks.base import Callback, batch_view, check_attack_call, steepest_direction
from edgewise.losses import is_adversarial, logit_margin
from edgewise.projections import NORMS, project
from edgewise.validation import check_bool, check_choice, check_logits, check_positive

# Budgets used when ``eps`` is not given: the usual Fashion-MNIST / MNIST-scale threat models (ℓ0 in pixels).
DEFAULT_EPS = {"linf": 0.1, "l2": 1.5, "l1": 10.0, "l0": 10.0}
LOSSES = ("ce", "cw")


def ascent_loss(logits: torch.Tensor, labels: torch.Tensor, *, loss: str, targeted: bool) -> torch.Tensor:
    """The per-sample loss PGD maximizes: cross-entropy (Madry et al.) or the negated C&W logit margin."""
    if loss == "ce":
        cross_entropy = F.cross_entropy(logits, labels, reduction="none")
        return -cross_entropy if targeted else cross_entropy
    return -logit_margin(logits, labels, targeted=targeted)


def pgd_step(delta: torch.Tensor, inputs: torch.Tensor, gradient: torch.Tensor, *, norm: str,
             eps: float | torch.Tensor, step_size: float) -> torch.Tensor:
    """One projected ascent step: proj(δ + α ε d(g)) onto {‖δ‖p ≤ ε, x + δ ∈ [0, 1]} (α ε = α for ℓ0)."""
    length = step_size if norm == "l0" else step_size * _per_sample(eps, delta)
    return project(delta + length * steepest_direction(gradient, norm), inputs, norm=norm, eps=eps)


def _per_sample(eps: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """ε as a number, or a (B,) tensor reshaped to broadcast against ``like``."""
    return batch_view(eps, like) if isinstance(eps, torch.Tensor) else eps


def check_eps(eps: object, inputs: torch.Tensor) -> None:
    """``eps``: a positive number or a (B,) floating-point tensor of positive finite values."""
    if not isinstance(eps, torch.Tensor):
        check_positive("eps", eps)
        return
    if not eps.is_floating_point() or eps.shape != inputs.shape[:1] or eps.device != inputs.device:
        raise ValueError(f"eps must be a number or a floating-point tensor of shape ({inputs.shape[0]},) on "
                         f"{inputs.device}, got {eps.dtype} {tuple(eps.shape)} on {eps.device}")
    if not bool((torch.isfinite(eps) & (eps > 0)).all()):
        raise ValueError(f"eps must be finite and > 0, got min {float(eps.min()):.4g} max {float(eps.max()):.4g}")


def random_start(inputs: torch.Tensor, *, norm: str, eps: float | torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
    """δ₀: uniform in the ℓ∞ ball (Madry et al.); for the other norms a Gaussian direction of length U·ε,
    projected onto the ball ∩ box (ℓ0: zero, a random subset would be arbitrary)."""
    if norm == "l0":
        return torch.zeros_like(inputs)
    if norm == "linf":
        noise = torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        return project((2 * noise - 1) * _per_sample(eps, inputs), inputs, norm=norm, eps=eps)
    direction = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
    radius = torch.rand(inputs.shape[0], generator=generator, device=inputs.device, dtype=inputs.dtype) * eps
    unit = direction / batch_view(direction.flatten(1).norm(p=1 if norm == "l1" else 2, dim=1), direction)
    return project(unit * batch_view(radius, inputs), inputs, norm=norm, eps=eps)


def pgd(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "linf",
    eps: float | torch.Tensor | None = None,
    steps: int = 40,
    step_size: float | None = None,
    random_init: bool = False,
    loss: str = "ce",
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Adversarial examples within ‖δ‖p ≤ ε by projected gradient ascent (Madry et al. 2018, sec. 2.1).

    Budget: exactly ``steps`` forwards and backwards per sample. Returned per sample: the evaluated iterate of
    highest loss among the adversarial ones if any was adversarial, otherwise the last iterate (after the final
    step, not evaluated: the best guess, re-verified by ``edgewise.eval.run_attack``).

    Args:
        norm: p of the threat model, "linf", "l2", "l1" or "l0". eps: ε, a number or a (B,) tensor (one
            budget per sample; default ``DEFAULT_EPS[norm]``).
        steps: the number of iterations. step_size: α as a fraction of ε (α ε per step; for ℓ0 α alone);
            default 2.5 / steps, Madry et al.'s "2.5 ε / steps" rule, which lets the iterate cross the ball.
        random_init: start from a random point of the ball (Madry et al.; what the training recipes use)
            instead of δ = 0. Off by default: then PGD is deterministic and a sample's result does not depend on
            the batch it is in, the evaluation contract of every edgewise attack.
        loss: "ce" (cross-entropy, Madry et al.) or "cw" (C&W logit margin).
        targeted: ``labels`` are targets (the loss is minimized toward them).
        generator: draws the random start (None: a generator seeded with 0; never the global RNG).
        callback: ``callback(step, {"loss", "adversarial"})`` each step.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_choice("norm", norm, NORMS)
    check_choice("loss", loss, LOSSES)
    eps = DEFAULT_EPS[norm] if eps is None else eps
    check_eps(eps, inputs)
    check_positive("steps", steps, integer=True)
    step_size = 2.5 / steps if step_size is None else step_size
    check_positive("step_size", step_size)
    check_bool("random_init", random_init)
    if random_init:
        generator = torch.Generator(inputs.device).manual_seed(0) if generator is None else generator
        delta = random_start(inputs, norm=norm, eps=eps, generator=generator)
    else:
        delta = torch.zeros_like(inputs)
    best_loss = torch.full(inputs.shape[:1], -torch.inf, dtype=inputs.dtype, device=inputs.device)
    best_adv = inputs.clone()
    for step in range(steps):
        delta.requires_grad_(True)
        logits = model(inputs + delta)
        if step == 0:
            check_logits(logits, labels)
        losses = ascent_loss(logits, labels, loss=loss, targeted=targeted)
        (gradient,) = torch.autograd.grad(losses.sum(), delta)
        delta = delta.detach()
        adversarial = is_adversarial(logits.detach(), labels, targeted=targeted)
        better = adversarial & (losses.detach() > best_loss)
        best_loss = torch.where(better, losses.detach(), best_loss)
        best_adv = torch.where(batch_view(better, inputs), inputs + delta, best_adv)
        delta = pgd_step(delta, inputs, gradient, norm=norm, eps=eps, step_size=step_size)
        if callback is not None:
            callback(step, {"loss": losses.detach(), "adversarial": adversarial})
    found = batch_view(best_loss > -torch.inf, inputs)
    return torch.where(found, best_adv, (inputs + delta).clamp(0, 1))
