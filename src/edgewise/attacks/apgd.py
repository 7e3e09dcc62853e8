"""Auto-PGD (APGD) budget attack — Croce & Hein, *Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks* (ICML 2020, arXiv:2003.01690), Algorithm 1, for ℓ∞ and ℓ2; and its ℓ1 form,
Croce & Hein, *Mind the box: ℓ1-APGD for sparse adversarial attacks on image classifiers* (ICML 2021,
arXiv:2103.01208).

ℓ∞ / ℓ2 (Algorithm 1): with P the projection onto S = {‖δ‖p ≤ ε} ∩ box and d the steepest-ascent direction
(sign of the gradient for ℓ∞, the normalized gradient for ℓ2),

    z⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + η⁽ᵏ⁾ d(∇f(x⁽ᵏ⁾)))                                                   (eq. 2, first line)
    x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α (z⁽ᵏ⁺¹⁾ − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾))      α = 0.75, momentum  (eq. 2, second line)

(the first step is a plain projected step), η⁽⁰⁾ = 2ε. At the checkpoints w_j = ⌈p_j N⌉, p₀ = 0, p₁ = 0.22,
p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (sec. 3.2), the step size is halved and the iterate restarts from
the point of highest loss seen, x_max, when

    1. Σ_{i=w_{j−1}}^{w_j − 1} 1[f(x⁽ⁱ⁺¹⁾) > f(x⁽ⁱ⁾)] < ρ (w_j − w_{j−1}),  ρ = 0.75  (the loss rose too rarely), or
    2. η⁽ʷʲ⁻¹⁾ ≡ η⁽ʷʲ⁾ and f_max⁽ʷʲ⁻¹⁾ ≡ f_max⁽ʷʲ⁾  (not halved last time and no progress since).

ℓ1 (Mind the box, sec. 3-4): the step moves along sign(∇f) on the k coordinates of largest |∇f| only, scaled to
ℓ1 length η (the steepest ascent on the ℓ1 ball moves a single coordinate, which the box often blocks), then
the exact projection onto ℓ1-ball ∩ box (sec. 3.1; ``edgewise.projections``). The sparsity adapts: k starts at
20% of the coordinates and at each checkpoint (every 4% of the iterations) becomes ‖δ_max‖₀ / 1.5; when
‖δ_max‖₀ shrank by 5% or more since the last checkpoint, η resets to ε and the iterate restarts from x_max,
otherwise η is divided by 1.5, within [ε/10, ε]. No momentum, η⁽⁰⁾ = ε. These values are the authors' (their
implementation in ``autoattack``); the paper states the scheme.

Losses: the cross-entropy (APGD-CE) or the DLR loss (sec. 4), −DLR⁺ of ``edgewise.losses``; targeted, −CE to the
target or −tDLR⁺ (APGD-T's targeted DLR with the true class replaced by the largest other logit, since a targeted
call here gets only the targets).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgewise.attacks.base import Callback, batch_view, check_attack_call, steepest_direction
from edgewise.attacks.pgd import DEFAULT_EPS, ascent_loss, check_eps, random_start
from edgewise.distances import lp
from edgewise.losses import dlr_plus, is_adversarial, targeted_dlr_plus
from edgewise.projections import project
from edgewise.validation import check_bool, check_choice, check_fraction, check_logits, check_positive

NORMS = ("l1", "l2", "linf")
LOSSES = ("ce", "dlr")
_NORM_OF = {"l1": lp.l1, "l2": lp.l2, "linf": lp.linf}


def apgd_loss(logits: torch.Tensor, labels: torch.Tensor, *, loss: str, targeted: bool) -> torch.Tensor:
    """The per-sample loss APGD maximizes: cross-entropy, or DLR = −DLR⁺ (targeted: −tDLR⁺)."""
    if loss == "ce":
        return ascent_loss(logits, labels, loss="ce", targeted=targeted)
    return -(targeted_dlr_plus(logits, labels) if targeted else dlr_plus(logits, labels))


def checkpoints(steps: int) -> list[int]:
    """w_j = ⌈p_j N⌉ for p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), below N (sec. 3.2)."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(round(value * steps, 9)) for value in p}  # round: 0.41 + 0.16 is 0.5700000000000001
    return sorted(mark for mark in marks if 0 < mark < steps)


def sparse_direction(gradient: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
    """ℓ1-APGD's direction: sign(g) on the ⌈fraction·d⌉ coordinates of largest |g| (ties included), scaled to ℓ1
    length 1 (0 where g = 0)."""
    flat = gradient.abs().flatten(1)
    size = flat.shape[1]
    rank = ((1 - fraction) * size).long().clamp(0, size - 1)
    threshold = flat.sort(dim=1).values.gather(1, rank.unsqueeze(1))
    direction = (gradient.sign().flatten(1) * (flat >= threshold)).view_as(gradient)
    return direction / batch_view(direction.flatten(1).abs().sum(1).clamp_min(1), gradient)


def _evaluate(model: nn.Module, inputs: torch.Tensor, delta: torch.Tensor, labels: torch.Tensor, *, loss: str,
              targeted: bool, first: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward and backward at x + δ: (loss, gradient, adversarial), detached."""
    delta = delta.detach().requires_grad_(True)
    logits = model(inputs + delta)
    if first:
        check_logits(logits, labels)
    losses = apgd_loss(logits, labels, loss=loss, targeted=targeted)
    (gradient,) = torch.autograd.grad(losses.sum(), delta)
    return losses.detach(), gradient, is_adversarial(logits.detach(), labels, targeted=targeted)


def apgd(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "linf",
    eps: float | torch.Tensor | None = None,
    steps: int = 100,
    loss: str = "ce",
    momentum: float = 0.75,
    rho: float = 0.75,
    random_init: bool = False,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Adversarial examples within ‖δ‖p ≤ ε by Auto-PGD (Algorithm 1; ℓ1: Mind the box).

    Budget: exactly ``steps`` forwards and backwards per sample (N_iter = steps: x⁽⁰⁾ and the steps − 1 iterates
    after it are evaluated). Returned per sample: the evaluated adversarial iterate of smallest ‖δ‖p, or the
    original input if none was adversarial.

    Args:
        norm: "linf", "l2" or "l1". eps: ε, a number or a (B,) tensor (default ``pgd.DEFAULT_EPS[norm]``).
        steps: N_iter. loss: "ce" (APGD-CE) or "dlr" (APGD-DLR; targeted: tDLR⁺, needs 4 classes).
        momentum: α of eq. 2 (paper: 0.75; ℓ1 takes no momentum). rho: ρ of condition 1 (paper: 0.75).
        random_init: x⁽⁰⁾ drawn in the ball (the authors' implementation) instead of x⁽⁰⁾ = x. Off by default, so
            that a sample's result does not depend on its batch (the evaluation contract of edgewise's attacks).
        targeted: ``labels`` are targets. generator: draws the random start (None: seeded with 0).
        callback: ``callback(step, {"loss", "best_loss", "step_size", "adversarial"})`` after each evaluation.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_choice("norm", norm, NORMS)
    check_choice("loss", loss, LOSSES)
    eps = DEFAULT_EPS[norm] if eps is None else eps
    check_eps(eps, inputs)
    check_positive("steps", steps, integer=True)
    check_fraction("momentum", momentum)
    check_fraction("rho", rho)
    check_bool("random_init", random_init)
    radius = torch.as_tensor(eps, dtype=inputs.dtype, device=inputs.device).expand(inputs.shape[0]).clone()
    if random_init:
        generator = torch.Generator(inputs.device).manual_seed(0) if generator is None else generator
        delta = random_start(inputs, norm=norm, eps=radius, generator=generator)
    else:
        delta = torch.zeros_like(inputs)
    distance = _NORM_OF[norm]
    losses, gradient, adversarial = _evaluate(model, inputs, delta, labels, loss=loss, targeted=targeted, first=True)
    best_loss, best_delta, best_gradient = losses, delta, gradient
    adv_norm = torch.where(adversarial, distance(inputs, inputs + delta), math.inf)
    adv_delta = torch.where(batch_view(adversarial, inputs), delta, torch.zeros_like(delta))
    step_size = radius * (1.0 if norm == "l1" else 2.0)
    if callback is not None:
        callback(0, {"loss": losses, "best_loss": best_loss, "step_size": step_size, "adversarial": adversarial})
    interval = max(int(0.04 * steps), 1)                   # ℓ1: checkpoint every 4% of the iterations
    marks = set(range(interval, steps, interval)) if norm == "l1" else set(checkpoints(steps))
    last_mark = 0
    increases = torch.zeros_like(best_loss)
    reduced_last = torch.ones_like(adversarial)             # condition 2 cannot hold at the first checkpoint
    best_at_last_mark = best_loss
    fraction = torch.full_like(best_loss, 0.2)              # ℓ1: k / d
    support_at_last_mark = torch.full_like(best_loss, float(inputs[0].numel()))
    previous = delta
    for step in range(1, steps):
        if norm == "l1":
            moved = delta + batch_view(step_size, delta) * sparse_direction(gradient, fraction)
            new = project(moved, inputs, norm=norm, eps=radius)
        else:
            moved = delta + batch_view(step_size, delta) * steepest_direction(gradient, norm)
            z = project(moved, inputs, norm=norm, eps=radius)                       # eq. 2, first line
            a = 1.0 if step == 1 else momentum
            new = project(delta + a * (z - delta) + (1 - a) * (delta - previous),  # eq. 2, second line
                          inputs, norm=norm, eps=radius)
        previous, delta = delta, new
        new_losses, gradient, adversarial = _evaluate(model, inputs, delta, labels, loss=loss, targeted=targeted,
                                                      first=False)
        increases = increases + (new_losses > losses).to(increases.dtype)
        losses = new_losses
        improved = losses > best_loss
        best_loss = torch.where(improved, losses, best_loss)
        best_delta = torch.where(batch_view(improved, delta), delta, best_delta)
        best_gradient = torch.where(batch_view(improved, delta), gradient, best_gradient)
        size = distance(inputs, inputs + delta)
        smaller = adversarial & (size < adv_norm)
        adv_norm = torch.where(smaller, size, adv_norm)
        adv_delta = torch.where(batch_view(smaller, delta), delta, adv_delta)
        if callback is not None:
            callback(step, {"loss": losses, "best_loss": best_loss, "step_size": step_size,
                            "adversarial": adversarial})
        if step not in marks:
            continue
        if norm == "l1":
            support = lp.l0(inputs, inputs + best_delta)
            restart = support / support_at_last_mark < 0.95
            fraction = support / inputs[0].numel() / 1.5
            step_size = torch.where(restart, radius, step_size / 1.5)
            step_size = torch.minimum(torch.maximum(step_size, radius / 10), radius)
            support_at_last_mark = support
        else:
            oscillating = increases < rho * (step - last_mark)                       # condition 1
            stalled = ~reduced_last & (best_at_last_mark >= best_loss)               # condition 2
            restart = oscillating | stalled
            step_size = torch.where(restart, step_size / 2, step_size)
            reduced_last, best_at_last_mark = restart, best_loss
            increases = torch.zeros_like(increases)
            last_mark = step
        delta = torch.where(batch_view(restart, delta), best_delta, delta)
        gradient = torch.where(batch_view(restart, delta), best_gradient, gradient)
    found = batch_view(torch.isfinite(adv_norm), inputs)
    return torch.where(found, inputs + adv_delta, inputs)
