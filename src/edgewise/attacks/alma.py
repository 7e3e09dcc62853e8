"""ALMA: Augmented Lagrangian Method for Adversarial attacks — Rony et al., ICCV 2021 (arXiv:2011.11857).

Minimal adversarial examples for any differentiable distance D: min D(x + δ, x) s.t. DLR⁺(f(x + δ), y) < 0
(eq. 5), solved by Algorithm 2, which merges the inner and outer iterations of an augmented Lagrangian method.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgewise.attacks.base import Callback, DistanceSpec, batch_view, bind_distance, check_attack_call
from edgewise.distances import DistanceFn
from edgewise.losses import dlr_plus, is_adversarial, targeted_dlr_plus
from edgewise.penalties import get as get_penalty
from edgewise.validation import check_fraction, check_logits, check_positive

# Appendix F, Table 3: the increase ε of the distance in the first step, per distance (about a tenth of the
# expected distances). Table 3's CIEDE2000 value, 0.05, is on the scale of the authors' implementation, whose Lab
# conversion divides XYZ in [0, 1] by a white point on the 0-100 scale (white gets L* ≈ 9); edgewise's CIEDE2000
# is colour-science's, 6-8 times larger on the same pairs (median ratio 8.1 / 7.0 / 5.7 for Gaussian noise of
# std 0.01 / 0.05 / 0.2 on 200 sample images), so the same first step is ε = 0.05 × 8 = 0.4 here.
INIT_DISTANCE = {"l1": 0.5, "l2": 0.1, "ssim": 3e-5, "ciede2000": 0.4, "lpips": 1e-3}


def default_alpha(steps: int) -> float:
    """EMA coefficient α (sec. 4 and Appendix E): 0.5 for 100 steps, 0.9 from 1,000, linear in between."""
    return float(min(0.9, max(0.5, 0.5 + 0.4 * (steps - 100) / 900)))


def initial_step_size(distance: DistanceFn, inputs: torch.Tensor, grad: torch.Tensor, target: float,
                      *, searches: int = 20) -> torch.Tensor:
    """η⁽⁰⁾ per sample such that D(P[0,1](x − η⁽⁰⁾ g), x) = ε (sec. 3.2.3): a line search, then a binary search.

    The line search doubles η from 1 until the step crosses ε; the binary search then narrows the bracket
    ``searches`` times and returns its middle, the estimate of the root whose error is at most half the final
    bracket (with η⁽⁰⁾ ≈ 0.007 for ℓ1 on Fashion-MNIST, 20 halvings of [0, 1] leave a bracket of 1.4e-4 relative
    width; the authors' implementation also returns the middle). Model-free: it evaluates only the distance.

    The search is along the gradient g, as sec. 3.2.3 writes it. The actual first step is RMSProp's, about
    g/√α (the square-gradient average starts at 1), so it increases D by about ε/√α; Table 3's ε were tuned
    that way. Searching along the RMSProp step instead (D(x̃⁽¹⁾, x) = ε exactly) gave larger medians on
    smallcnn-fmnist (ℓ2, 100 steps, 926 images, three draws of ε: 0.2689 / 0.2682 / 0.2684 against
    0.2671 / 0.2681 / 0.2674), so it is not done.
    """

    def reached(eta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return distance((inputs - batch_view(eta, inputs) * grad).clamp(0, 1)) >= target

    low = torch.zeros(inputs.shape[0], dtype=inputs.dtype, device=inputs.device)
    high = torch.ones_like(low)
    for _ in range(40):  # line search: grow the upper end until it overshoots ε (at most 2^40)
        over = reached(high)
        low = torch.where(over, low, high)
        high = torch.where(over, high, 2 * high)
    for _ in range(searches):  # binary search inside [low, high]
        middle = (low + high) / 2
        over = reached(middle)
        low, high = torch.where(over, low, middle), torch.where(over, middle, high)
    return (low + high) / 2


def alma(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    distance: DistanceSpec = "l2",
    distance_options: dict[str, Any] | None = None,
    steps: int = 1000,
    targeted: bool = False,
    penalty: str = "p2",
    alpha: float | None = None,
    init_distance: float | None = None,
    init_mu: float = 1.0,
    init_rho: float = 1.0,
    mu_min: float = 1e-6,
    mu_max: float = 1e12,
    rho_growth: float = 1.2,
    constraint_improvement: float = 0.95,
    rho_period: int = 10,
    final_lr_ratio: float = 0.01,
    momentum: float | None = None,
    square_avg_decay: float | None = None,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Minimal adversarial examples for ``distance`` by ALMA (Algorithm 2).

    Each iteration i: z = f(x̃⁽ⁱ⁾), d⁽ⁱ⁾ = DLR⁺(z, y) (tDLR⁺ when targeted, eq. 18) (lines 3-4);
    μ̂ = P'(d⁽ⁱ⁾, ρ⁽ⁱ⁾, μ⁽ⁱ⁾) and μ⁽ⁱ⁺¹⁾ = clip(αμ⁽ⁱ⁾ + (1 − α)μ̂, μmin, μmax) (lines 5-6, eq. 9);
    L = D(x̃⁽ⁱ⁾, x) + P(d⁽ⁱ⁾, ρ⁽ⁱ⁾, μ⁽ⁱ⁺¹⁾) (line 7); a step on ∇L with RMSProp + momentum (the square-gradient
    EMA starts at 1, sec. 3.2.4), then the projection on [0, 1] (lines 8-9); every M steps, ρ ← γρ for samples
    with no adversarial yet whose constraint did not decrease below τ times its value M steps before (lines
    10-14). The step size η⁽⁰⁾ comes from the initial search of sec. 3.2.3 and, per sample, stays constant until
    the first adversarial, then decays exponentially to η⁽⁰⁾·``final_lr_ratio`` at the last step (Fig. 3).
    The adversarial iterate of smallest distance is returned (line 17).

    Budget: ``steps`` forwards and backwards (the step-size search reuses the first step's gradient).

    Args:
        distance: D — "l1", "l2", "ciede2000", "ssim", "lpips" (``edgewise.distances``) or a factory
            ``reference -> (perturbed -> (B,))``; ``distance_options`` are passed to the registry factory.
        steps: N. targeted: ``labels`` are targets (tDLR⁺ constraint, needs >= 4 classes; DLR⁺ needs 3).
        penalty: P — "p2" (the paper's choice, sec. 3.2.2), "p1", "p3" or "phr" (Appendix D).
        alpha: α, EMA of μ (default 0.5 at 100 steps, 0.9 at 1,000, sec. 4 / Appendix E).
        init_distance: ε, the increase of D of the first step (default per distance, Appendix F).
        init_mu, init_rho: μ⁽⁰⁾, ρ⁽⁰⁾ = 1. mu_min, mu_max: [μmin, μmax] = [1e-6, 1e12].
        rho_growth: γ = 1.2. constraint_improvement: τ = 0.95. rho_period: M = 10 (sec. 4).
        final_lr_ratio: η at the last step over η⁽⁰⁾ (1/100, sec. 3.2.3).
        momentum, square_avg_decay: the momentum and the square-gradient EMA decay of RMSProp. The paper does not
            give them; the default (None) is α for both, as in the authors' implementation (adv-lib 0.2.8).
            Swept on held-out images (``benchmarks/alma_rmsprop_sweep.py``), no other pair gains for both ℓ1
            and ℓ2, and none gains more than 1.4%.
        generator: unused randomness source (ALMA is deterministic); accepted for the common contract.
        callback: ``callback(step, {"mu", "rho", "lr", "constraint", "distance", "best_distance"})``.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_positive("steps", steps, integer=True)
    alpha = default_alpha(steps) if alpha is None else alpha
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    if init_distance is None:
        if not isinstance(distance, str) or distance not in INIT_DISTANCE:
            raise ValueError(f"init_distance must be given for distance {distance!r} (defaults exist for "
                             f"{sorted(INIT_DISTANCE)})")
        init_distance = INIT_DISTANCE[distance]
    for name, value in (("init_distance", init_distance), ("init_mu", init_mu), ("init_rho", init_rho),
                        ("mu_min", mu_min), ("mu_max", mu_max), ("final_lr_ratio", final_lr_ratio)):
        check_positive(name, value)
    check_positive("rho_period", rho_period, integer=True)
    check_fraction("constraint_improvement", constraint_improvement)
    momentum = alpha if momentum is None else momentum
    square_avg_decay = alpha if square_avg_decay is None else square_avg_decay
    if not 0 <= square_avg_decay < 1:
        raise ValueError(f"square_avg_decay must be in [0, 1), got {square_avg_decay}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    check_positive("rho_growth", rho_growth)
    if rho_growth <= 1:
        raise ValueError(f"rho_growth must be > 1, got {rho_growth}")
    penalty_function, penalty_derivative = get_penalty(penalty)
    distance_fn = bind_distance(distance, inputs, distance_options or {})
    constraint = targeted_dlr_plus if targeted else dlr_plus

    batch = inputs.shape[0]
    mu = torch.full((batch,), init_mu, dtype=inputs.dtype, device=inputs.device)
    rho = torch.full_like(mu, init_rho)
    adv = inputs.clone().requires_grad_(True)  # x̃⁽⁰⁾ = x (line 1), updated in place below
    square_avg = torch.ones_like(inputs)
    velocity = torch.zeros_like(inputs)
    best_distance = torch.full_like(mu, float("inf"))
    best_adv = inputs.clone()
    found_at = torch.full((batch,), -1, dtype=torch.long, device=inputs.device)
    lr_init = torch.ones_like(mu)
    steps_tensor = torch.arange(steps, device=inputs.device)
    for step in range(steps):
        logits = model(adv)                                                               # line 3
        if step == 0:
            check_logits(logits, labels)
        d = constraint(logits, labels)                                                    # line 4
        mu_hat = penalty_derivative(d.detach(), rho, mu)                                  # line 5
        # Line 6. As in the authors' implementation, the EMA starts at the second iteration (μ⁽¹⁾ = μ⁽⁰⁾): the
        # first iteration serves as the direction of the step-size search. Read literally, line 6 also updates
        # at i = 0; measured on smallcnn-fmnist (250 sample images, ℓ2, 100 steps) that gives a median of
        # 0.2545 instead of 0.2471 (adv-lib 0.2473), so we keep the authors' choice.
        if step:
            mu = (alpha * mu + (1 - alpha) * mu_hat).clamp(mu_min, mu_max)
        current_distance = distance_fn(adv)
        # Line 7. At x̃⁽⁰⁾ = x the distance is at its minimum (zero gradient), so the first gradient is
        # P'·∇DLR⁺, the direction of the initial step-size search: it is done on this gradient (same
        # step as the paper's search on ∇DLR⁺, without an extra forward/backward pass).
        loss = penalty_function(d, rho, mu) + (current_distance if step else 0)
        (grad,) = torch.autograd.grad(loss.sum(), adv)                                    # line 8
        d, current_distance = d.detach(), current_distance.detach()
        if step == 0:
            lr_init = initial_step_size(distance_fn, inputs, grad, init_distance)        # sec. 3.2.3
            reference_constraint = d

        adversarial = is_adversarial(logits.detach(), labels, targeted=targeted)
        better = adversarial & (current_distance < best_distance)
        best_distance = torch.where(better, current_distance, best_distance)
        best_adv = torch.where(batch_view(better, inputs), adv.detach(), best_adv)
        found_at = torch.where(adversarial & (found_at < 0), steps_tensor[step], found_at)

        # Step size: constant while exploring, exponential decay to lr_init * final_lr_ratio after the first
        # adversarial (sec. 3.2.3, Fig. 3), per sample.
        remaining = (steps - found_at).clamp(min=1).to(inputs.dtype)
        progress = ((step - found_at).to(inputs.dtype) / remaining).clamp(min=0)
        lr = lr_init * torch.where(found_at >= 0, final_lr_ratio ** progress, torch.ones_like(progress))

        # RMSProp with momentum, square-gradient average initialized at 1 (sec. 3.2.4); line 9 with projection.
        # In place: no full-size temporaries besides the root of the average.
        square_avg.mul_(square_avg_decay).addcmul_(grad, grad, value=1 - square_avg_decay)
        velocity.mul_(momentum).addcdiv_(grad, square_avg.sqrt().add_(1e-8))
        with torch.no_grad():
            adv.addcmul_(velocity, batch_view(lr, adv), value=-1).clamp_(0, 1)

        # Lines 10-14: every M steps, grow ρ where no adversarial was ever found and d did not improve by τ.
        if (step + 1) % rho_period == 0:
            stalled = (found_at < 0) & (d > constraint_improvement * reference_constraint)
            rho = torch.where(stalled, rho_growth * rho, rho)
            reference_constraint = d
        if callback is not None:
            callback(step, {"mu": mu, "rho": rho, "lr": lr, "constraint": d, "distance": current_distance,
                            "best_distance": best_distance})
    return best_adv
