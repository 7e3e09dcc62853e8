"""Carlini & Wagner's penalty attack — Carlini & Wagner, S&P 2017 (arXiv:1608.04644), for any distance.

The baseline of the ALMA paper (Rony et al., ICCV 2021, arXiv:2011.11857, sec. 2 eq. 3 and sec. 5): the
constrained problem min D(x, x') s.t. x' adversarial is replaced by the penalty problem
min D(x, x') + c · max(margin(f(x'), y), −κ) and the weight c is found per sample by a binary search.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgewise.attacks.base import Callback, DistanceSpec, batch_view, bind_distance, check_attack_call
from edgewise.losses import is_adversarial, logit_margin
from edgewise.validation import check_fraction, check_logits, check_positive

# Adam's moment decays and denominator term (Kingma & Ba, Algorithm 1), the optimizer C&W use.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def next_const(const: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
               success: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of C&W's search over c, per sample (sec. V): returns (c, lower, upper) for the next round.

    A success lowers the upper bound to c, a failure raises the lower bound to c; c becomes the middle of the
    bracket once an upper bound exists, and is multiplied by 10 until then.
    """
    upper = torch.where(success, torch.minimum(upper, const), upper)
    lower = torch.where(success, lower, torch.maximum(lower, const))
    const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
    return const, lower, upper


def cw(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    distance: DistanceSpec = "l2",
    distance_options: dict[str, Any] | None = None,
    steps: int = 100,
    binary_search_steps: int = 9,
    initial_const: float = 0.01,
    confidence: float = 0.0,
    step_size: float = 0.01,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Minimal adversarial examples for ``distance`` by C&W's penalty method with a binary search over c.

    For each of ``binary_search_steps`` rounds, starting from x' = x, ``steps`` iterations of Adam minimize
    L(x') = D(x, x') + c · max(m(x'), −κ) (C&W eq. of sec. V with their f₆; ALMA paper eq. 3), where m is the
    logit margin z_y − max_{j≠y} z_j (targeted: max_{j≠t} z_j − z_t), negative iff adversarial; each Adam step
    is followed by the projection on [0, 1]. Between rounds c is updated per sample by :func:`next_const`.
    Every iterate is checked (adversarial with margin ≤ −κ) and the one of smallest distance over all rounds is
    returned; samples never adversarial come back unchanged.

    The box [0, 1] is kept by projection, not by C&W's change of variables x' = (tanh w + 1) / 2: projection
    starts exactly at x (D = 0, which every registry distance handles) and moves pixels that sit at 0 or 1 (most
    of an MNIST-like background) as freely as the others, while tanh must start from a clipped atanh(2x − 1)
    and its factor (1 − tanh² w) / 2 makes the gradient of saturated pixels vanish, for every distance alike.

    Budget: ``binary_search_steps`` × ``steps`` forwards and backwards per sample (the command-line benchmark
    labels it "9×steps"); nothing stops early, so every sample costs the same.

    Args:
        distance: D — a name of ``edgewise.distances`` ("l1", "l2", "ciede2000", "ssim", "lpips") or a factory
            ``reference -> (perturbed -> (B,))``; ``distance_options`` are passed to the registry factory.
        steps: Adam iterations per round of the search. binary_search_steps: rounds of the search over c.
        initial_const: c in the first round. confidence: κ >= 0, the margin below which the penalty vanishes.
        step_size: Adam's learning rate (C&W: 0.01). targeted: ``labels`` are targets.
        generator: unused (the attack is deterministic); accepted for the common contract.
        callback: ``callback(step, {"const", "lr", "margin", "distance", "best_distance"})`` for every iteration,
            ``step`` counted over all rounds (0 .. binary_search_steps × steps − 1).
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_positive("steps", steps, integer=True)
    check_positive("binary_search_steps", binary_search_steps, integer=True)
    check_positive("initial_const", initial_const)
    check_positive("confidence", confidence, allow_zero=True)
    check_fraction("step_size", step_size)
    distance_fn = bind_distance(distance, inputs, distance_options or {})
    beta1, beta2 = ADAM_BETAS
    batch = inputs.shape[0]
    const = torch.full((batch,), float(initial_const), dtype=inputs.dtype, device=inputs.device)
    lower, upper = torch.zeros_like(const), torch.full_like(const, float("inf"))
    best_distance = torch.full_like(const, float("inf"))
    best_adv = inputs.clone()
    lr = torch.full_like(const, step_size)
    for search in range(binary_search_steps):
        adv = inputs.clone()
        first_moment, second_moment = torch.zeros_like(inputs), torch.zeros_like(inputs)
        success = torch.zeros(batch, dtype=torch.bool, device=inputs.device)
        for step in range(steps):
            adv.requires_grad_(True)
            logits = model(adv)
            if search == 0 and step == 0:
                check_logits(logits, labels)
            margin = logit_margin(logits, labels, targeted=targeted)
            current_distance = distance_fn(adv)
            loss = current_distance + const * margin.clamp_min(-confidence)
            (grad,) = torch.autograd.grad(loss.sum(), adv)
            adv, margin, current_distance = adv.detach(), margin.detach(), current_distance.detach()

            adversarial = is_adversarial(logits.detach(), labels, targeted=targeted) & (margin <= -confidence)
            success = success | adversarial
            better = adversarial & (current_distance < best_distance)
            best_distance = torch.where(better, current_distance, best_distance)
            best_adv = torch.where(batch_view(better, inputs), adv, best_adv)

            first_moment = beta1 * first_moment + (1 - beta1) * grad
            second_moment = beta2 * second_moment + (1 - beta2) * grad.square()
            corrected = (first_moment / (1 - beta1 ** (step + 1))) / (
                (second_moment / (1 - beta2 ** (step + 1))).sqrt() + ADAM_EPS)
            adv = (adv - step_size * corrected).clamp(0, 1)
            if callback is not None:
                callback(search * steps + step, {"const": const, "lr": lr, "margin": margin,
                                                 "distance": current_distance, "best_distance": best_distance})
        const, lower, upper = next_const(const, lower, upper, success)
    return best_adv
