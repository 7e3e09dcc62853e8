"""Fast Adaptive Boundary (FAB) attack — Croce & Hein, *Minimally distorted adversarial examples with a fast
adaptive boundary attack* (ICML 2020, arXiv:1907.02044), Algorithm 1, for ℓ1, ℓ2 and ℓ∞.

FAB walks along the decision boundary of the linearized classifier. With y the true class, f the logits and
x⁽ⁱ⁾ the iterate (x⁽⁰⁾ = x_orig), each iteration

1. linearizes the logit differences at x⁽ⁱ⁾: π_s = {z : f_s(x⁽ⁱ⁾) − f_y(x⁽ⁱ⁾) + ⟨∇f_s(x⁽ⁱ⁾) − ∇f_y(x⁽ⁱ⁾),
   z − x⁽ⁱ⁾⟩ = 0} and picks the one closest in the dual norm q (1/p + 1/q = 1):
   s = argmin_{l≠y} |f_l − f_y| / ‖∇f_l − ∇f_y‖_q;
2. projects both the iterate and the original point onto π_s ∩ [0, 1]^d in ℓp (the projection
   :func:`edgewise.projections.project_hyperplane`): δ⁽ⁱ⁾ = proj_p(x⁽ⁱ⁾, π_s, C) − x⁽ⁱ⁾ and δ_orig⁽ⁱ⁾ =
   proj_p(x_orig, π_s, C) − x_orig;
3. takes the biased step x⁽ⁱ⁺¹⁾ = proj_C((1 − α)(x⁽ⁱ⁾ + η δ⁽ⁱ⁾) + α(x_orig + η δ_orig⁽ⁱ⁾)),
   α = min(‖δ⁽ⁱ⁾‖p / (‖δ⁽ⁱ⁾‖p + ‖δ_orig⁽ⁱ⁾‖p), α_max): close to the boundary the step goes to the nearest point
   of the boundary, far from it towards the projection of the original point; η > 1 extrapolates across;
4. if x⁽ⁱ⁺¹⁾ is adversarial it becomes the output where it is closer to x_orig than the best so far, and the
   backward step x⁽ⁱ⁺¹⁾ ← (1 − β) x_orig + β x⁽ⁱ⁺¹⁾ pulls it back towards the original.

Random restarts: after the first run from x_orig, each run starts at x_orig plus a random
perturbation of ℓp length min(ε, ‖x_out − x_orig‖p) / 2 (the best distance so far), clipped to the box: the
direction uniform in [−1, 1]^d for ℓ∞ and Gaussian for ℓ1/ℓ2, as the authors' code (github.com/fra31/fab-attack)
draws it. Their code also has an optional final search (3 steps, off by default there): steps along the segment
from x_orig to x_out, each at the zero of the secant of the logit margin between the last non-adversarial and
the last adversarial point; ``final_search`` steps of it, one forward each, 3 by default here (under a budget
also the passes that no iteration fits into): on 200 design images of two Fashion-MNIST MLPs at Q = 1,000 three
steps made the distance smaller on about 80% of them and larger on none (geometric mean 0.994-0.998 on ℓ1, ℓ2
and ℓ∞), 0.89-0.93 on the k-WTA MLP (docs/measurements.md), because FAB's best point is an overshoot (η) that
the backward step never brings exactly to the boundary.

Targeted (``labels`` are targets t; the authors define no such variant): one hyperplane, f_t − f_j for j the
largest other logit at x⁽ⁱ⁾ (the class that t must overtake; at x_orig the predicted one, FAB-T's hyperplane of
Croce & Hein's AutoAttack paper), and a point is adversarial when its prediction is t. Where two classes are close
to overtaking t, the projection onto one's boundary crosses the other's, and the iterate alternates between the two
without ever satisfying both. So the step keeps the previous iteration's linearized boundary too: ``TARGETED_ROUNDS``
times, the new point is projected (η-extrapolated) onto each of the two half-spaces {f_t − f_j ≥ 0} it violates,
alternately, which costs no pass. On 166 random 4-class linear problems with a reachable least likely target this
lowered the failures from 26 to 19 (ℓ∞), 18 to 5 (ℓ2) and 18 to 13 (ℓ1); at Q = 600 on mlp-fmnist with random
targets (179 images) the success rate from 71-77% to 88-94%, the distances where both succeed the same or smaller
(benchmarks/results/fab_targeted_linear.md).

FAB-T (``target_classes=n``, Croce & Hein's AutoAttack paper, ICML 2020, arXiv:2003.01690), the
untargeted variant whose cost does not grow with K: runs against each of the n classes most likely at the input
besides y, each with that class's hyperplane f_t − f_y alone; success is still any class ≠ y.

Cost per iteration and sample: one forward with a graph at x⁽ⁱ⁾, the gradients of the hyperplanes it needs, one
backward each through that graph (K − 1 untargeted, for the K − 1 logit differences f_l − f_y, which is what
step 1 uses; 1 targeted and FAB-T), and one forward without a graph at x⁽ⁱ⁺¹⁾ to check it: K + 1 passes
untargeted (11 for 10 classes), 3 targeted and FAB-T. The authors' code backpropagates the K logits (K + 2
passes); the differences give the same hyperplanes with one backward less. Every evaluated point that is
adversarial is a candidate for the output (the iterates after a backward step too), so the result is the best
point the run has seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from edgewise.attacks.base import Callback, batch_view, check_attack_call
from edgewise.attacks.pgd import DEFAULT_EPS
from edgewise.distances import lp
from edgewise.losses import is_adversarial, logit_margin, other_argmax
from edgewise.projections import project_hyperplane
from edgewise.validation import check_choice, check_fraction, check_logits, check_positive

NORMS = ("l1", "l2", "linf")
# The paper's α_max, η, β (sec. 3) and the authors' final search steps: the defaults of fab and fab_steps.
ALPHA_MAX, ETA, BETA, FINAL_SEARCH = 0.1, 1.05, 0.9, 3
TARGETED_ROUNDS = 5  # alternations between the current and the previous boundary of a targeted step
_NORM_OF = {"l1": lp.l1, "l2": lp.l2, "linf": lp.linf}


def passes_per_iteration(classes: int, *, targeted: bool) -> int:
    """Forward + backward passes per sample of one FAB iteration: a forward, K − 1 backwards (targeted: 1) and
    the forward that checks the new iterate."""
    return 3 if targeted else classes + 1


def other_classes(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, K − 1): per sample, the classes other than its label, in increasing order."""
    every = torch.arange(classes, device=labels.device).expand(len(labels), -1)
    return every[every != labels.unsqueeze(1)].view(len(labels), -1)


def closest_boundary(logits: torch.Tensor, points: torch.Tensor, towards: torch.Tensor, away: torch.Tensor, *,
                     norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 1 at ``points`` (whose graph ``logits`` holds): of the linearized boundaries g_l = f_l − f_a for the M
    classes l of ``towards`` (B, M) and a of ``away`` (B,), the one of least |g_l| / ‖∇g_l‖_q per sample; returns
    its value (B,) and gradient. One backward per boundary (the graph is freed after the last), keeping only the
    closest so far: memory of one gradient, not M (K − 1 = 999 gradients of ImageNet images would not fit)."""
    differences = logits.gather(1, towards) - logits.gather(1, away.unsqueeze(1))
    values = differences.detach()
    nearest = torch.full_like(values[:, 0], math.inf)
    value, gradient = torch.zeros_like(nearest), torch.zeros_like(points)
    for j in range(differences.shape[1]):
        (candidate,) = torch.autograd.grad(differences[:, j].sum(), points, retain_graph=j < differences.shape[1] - 1)
        dual = candidate.flatten(1).norm(p=lp.DUAL_ORDER[norm], dim=1)
        distance = values[:, j].abs() / dual.clamp_min(1e-12)
        closer = distance < nearest  # strict: the first of equally near boundaries, as an argmin
        nearest = torch.where(closer, distance, nearest)
        value = torch.where(closer, values[:, j], value)
        gradient = torch.where(batch_view(closer, gradient), candidate, gradient)
    return value, gradient


def boundary_offset(value: torch.Tensor, gradient: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """b (B,) of the linearized boundary value + ⟨gradient, z − points⟩ = 0 written as ⟨gradient, z⟩ + b = 0."""
    return value - (gradient * points).flatten(1).sum(1)


def biased_step(points: torch.Tensor, inputs: torch.Tensor, value: torch.Tensor, gradient: torch.Tensor, *,
                norm: str, alpha_max: float, eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 2-3: the projections of the iterate and of the original onto the linearized boundary
    π = {z : value + ⟨gradient, z − points⟩ = 0} ∩ box, and the point between them; returns it and α (B,)."""
    offset = boundary_offset(value, gradient, points)
    both = project_hyperplane(torch.cat([points, inputs]), torch.cat([gradient, gradient]),
                              torch.cat([offset, offset]), norm=norm)
    delta, delta_orig = both[: len(points)] - points, both[len(points):] - inputs
    length = _NORM_OF[norm](torch.zeros_like(delta), delta)
    length_orig = _NORM_OF[norm](torch.zeros_like(delta), delta_orig)
    total = length + length_orig
    alpha = torch.where(total > 0, length / torch.where(total > 0, total, 1), 0).clamp_max(alpha_max)
    a = batch_view(alpha, points)
    return ((1 - a) * (points + eta * delta) + a * (inputs + eta * delta_orig)).clamp(0, 1), alpha


def onto_both_sides(point: torch.Tensor, boundaries: list[tuple[torch.Tensor, torch.Tensor]], *, norm: str,
                    eta: float, rounds: int) -> torch.Tensor:
    """The targeted step's repair (module docstring): ``rounds`` times, for each linearized boundary
    ⟨w, z⟩ + b = 0 of ``boundaries`` (the previous one first) whose half-space ⟨w, z⟩ + b ≥ 0 ``point`` violates,
    the η-extrapolated ℓp projection onto it ∩ box (alternating projections onto the two half-spaces)."""
    for _ in range(rounds):
        for normal, offset in boundaries:
            violated = batch_view((normal * point).flatten(1).sum(1) + offset < 0, point)
            projected = project_hyperplane(point, normal, offset, norm=norm)
            point = torch.where(violated, (point + eta * (projected - point)).clamp(0, 1), point)
    return point


def restart_point(inputs: torch.Tensor, radius: torch.Tensor, *, norm: str,
                  generator: torch.Generator | None) -> torch.Tensor:
    """A random start: x_orig plus a perturbation of ℓp length ``radius`` (B,), uniform direction in
    [−1, 1]^d for ℓ∞, Gaussian for ℓ1/ℓ2, clipped to the box."""
    if norm == "linf":
        noise = 2 * torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype) - 1
    else:
        noise = torch.randn(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
    length = _NORM_OF[norm](torch.zeros_like(noise), noise).clamp_min(torch.finfo(noise.dtype).tiny)
    return (inputs + noise * batch_view(radius / length, inputs)).clamp(0, 1)


def _plan(steps: int | None, budget: int | None, runs: int, cost: int, final_search: int) -> list[int]:
    """The iterations of each run: ``steps`` each, or under a budget the iterations that fit it after the final
    search, shared among the runs (the first ones get the remainder; a run left with none gets 0)."""
    if budget is None:
        return [100 if steps is None else steps] * runs
    base, extra = divmod(max(budget - final_search, 0) // cost, runs)
    return [base + (run < extra) for run in range(runs)]


def fab(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "l2",
    steps: int | None = None,
    budget: int | None = None,
    restarts: int = 1,
    target_classes: int | None = None,
    eps: float | None = None,
    alpha_max: float = ALPHA_MAX,
    eta: float = ETA,
    beta: float = BETA,
    final_search: int = FINAL_SEARCH,
    targeted_rounds: int = TARGETED_ROUNDS,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Minimal ℓp adversarial examples by FAB (Algorithm 1; the steps in the module docstring).

    Budget per sample: K + 1 passes per iteration untargeted (K classes), 3 targeted, plus one forward per final
    search step; ``budget`` (AttackBench's passes per sample) sets the iterations to what fits after the final
    search instead of ``steps``, and the final search takes the rest: exactly ``budget`` passes where an
    iteration fits (else the one forward at the inputs). Returned per sample: the evaluated adversarial point of
    smallest ‖δ‖p, or the input if none.

    Args:
        norm: p, one of "l1", "l2", "linf".
        steps: N_iter, iterations per run (default 100); not with ``budget``.
        budget: forward + backward passes per sample for everything (the runs share the iterations that fit).
        restarts: runs (per target class with ``target_classes``); the first starts at the input, the others at
            random points (then a sample's result depends on its batch, through the draws).
        target_classes: n for FAB-T, the cheap untargeted variant of Croce & Hein's AutoAttack paper (ICML 2020,
            arXiv:2003.01690): for each of the n classes most likely at the input besides y (all K − 1 where
            fewer), runs with that class's hyperplane only (f_t − f_y, one backward: 3 passes per iteration
            whatever K), an adversarial being any class ≠ y; the runs share the budget and the best point over all
            of them is returned (the AutoAttack code stops at the first target that succeeds, a robust-accuracy
            use). None: untargeted FAB over the K − 1 hyperplanes.
        eps: ε, the largest radius of a random start before an adversarial is found (default
            ``pgd.DEFAULT_EPS[norm]``).
        alpha_max: α_max, the largest weight of the original point in the step (paper: 0.1).
        eta: η ≥ 1, the extrapolation of the projections (paper: 1.05).
        beta: β, the backward step's factor (paper: 0.9).
        final_search: steps of the authors' final search on the segment to the best point (0: none, as in the
            authors' and AttackBench's defaults); under a budget it also gets the passes left over by the
            iterations (fewer than one iteration's).
        targeted_rounds: alternations of a targeted step between the current and the previous boundary (module
            docstring; 0: the one hyperplane alone).
        targeted: ``labels`` are targets.
        generator: draws the random starts (None: seeded with 0).
        callback: ``callback(step, {"distance", "best_distance", "alpha", "adversarial"})`` after each iteration
            (step counts over the runs): ‖x⁽ⁱ⁺¹⁾ − x_orig‖p and whether x⁽ⁱ⁺¹⁾ is adversarial, before the backward
            step.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    check_choice("norm", norm, NORMS)
    if steps is not None and budget is not None:
        raise ValueError(f"steps and budget are exclusive (budget sets the iterations), got steps={steps!r} and "
                         f"budget={budget!r}")
    if steps is not None:
        check_positive("steps", steps, integer=True)
    if budget is not None:
        check_positive("budget", budget, integer=True)
    check_positive("restarts", restarts, integer=True)
    eps = DEFAULT_EPS[norm] if eps is None else eps
    check_positive("eps", eps)
    check_fraction("alpha_max", alpha_max)
    check_positive("eta", eta)
    if eta < 1:
        raise ValueError(f"eta must be >= 1 (an extrapolation), got {eta}")
    check_fraction("beta", beta)
    check_positive("final_search", final_search, integer=True, allow_zero=True)
    check_positive("targeted_rounds", targeted_rounds, integer=True, allow_zero=True)
    if target_classes is not None:
        check_positive("target_classes", target_classes, integer=True)
        if targeted:
            raise ValueError("target_classes is FAB-T, an untargeted attack: it takes no targeted=True")
    if restarts > 1 and generator is None:
        generator = torch.Generator(inputs.device).manual_seed(0)
    distance = _NORM_OF[norm]
    best = inputs.clone()
    best_norm = torch.full((len(inputs),), math.inf, dtype=inputs.dtype, device=inputs.device)
    best_margin = torch.zeros_like(best_norm)

    def record(points: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        nonlocal best, best_norm, best_margin
        adversarial = is_adversarial(logits, labels, targeted=targeted)
        size = distance(inputs, points)
        better = adversarial & (size < best_norm)
        best_norm = torch.where(better, size, best_norm)
        best = torch.where(batch_view(better, inputs), points, best)
        best_margin = torch.where(better, logit_margin(logits, labels, targeted=targeted), best_margin)
        return adversarial

    points = inputs.clone().requires_grad_(True)
    logits = model(points)
    classes = check_logits(logits, labels)
    record(inputs, logits.detach())
    clean_margin = logit_margin(logits.detach(), labels, targeted=targeted)
    # Per run: the classes whose hyperplanes it linearizes (towards) and None (targeted: the largest other logit,
    # chosen at each iteration) or the class they are measured against (away).
    ranked = other_classes(labels, classes).gather(
        1, logits.detach().gather(1, other_classes(labels, classes)).argsort(dim=1, descending=True, stable=True))
    if target_classes is not None:
        runs = [(ranked[:, rank:rank + 1], restart) for rank in range(min(target_classes, classes - 1))
                for restart in range(restarts)]
    elif targeted:
        runs = [(labels.unsqueeze(1), restart) for restart in range(restarts)]
    else:
        runs = [(other_classes(labels, classes), restart) for restart in range(restarts)]
    cost = passes_per_iteration(classes, targeted=targeted or target_classes is not None)
    plan = _plan(steps, budget, len(runs), cost, final_search)
    step = 0
    for run, ((towards, restart), iterations) in enumerate(zip(runs, plan, strict=True)):
        if iterations == 0:
            continue
        if run > 0:
            radius = torch.minimum(best_norm, torch.full_like(best_norm, eps)) / 2
            start = inputs if restart == 0 else restart_point(inputs, radius, norm=norm, generator=generator)
            points = start.clone().requires_grad_(True)
            logits = model(points)
            record(points.detach(), logits.detach())
        previous: tuple[torch.Tensor, torch.Tensor] | None = None  # the last iteration's boundary (targeted)
        for iteration in range(iterations):
            if iteration > 0:
                points = points.detach().requires_grad_(True)
                logits = model(points)
                record(points.detach(), logits.detach())
            away = other_argmax(logits.detach(), labels) if targeted else labels
            value, gradient = closest_boundary(logits, points, towards, away, norm=norm)
            new, alpha = biased_step(points.detach(), inputs, value, gradient, norm=norm, alpha_max=alpha_max,
                                     eta=eta)
            if targeted:
                boundary = (gradient, boundary_offset(value, gradient, points.detach()))
                if previous is not None:
                    new = onto_both_sides(new, [previous, boundary], norm=norm, eta=eta, rounds=targeted_rounds)
                previous = boundary
            with torch.no_grad():
                adversarial = record(new, model(new))
            if callback is not None:
                callback(step, {"distance": distance(inputs, new), "best_distance": best_norm, "alpha": alpha,
                                "adversarial": adversarial})
            step += 1
            points = torch.where(batch_view(adversarial, new), inputs + beta * (new - inputs), new)   # step 4
    if final_search and any(plan):
        # Under a budget the passes that no iteration fits into go to the final search too (each step only adds
        # a candidate, so more steps never give a larger distance).
        leftover = 0 if budget is None else budget - final_search - sum(plan) * cost
        _final_search(model, inputs, labels, clean_margin, best, best_margin, steps=final_search + leftover,
                      targeted=targeted, record=record)
    return best


def _final_search(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, clean_margin: torch.Tensor,
                  best: torch.Tensor, best_margin: torch.Tensor, *, steps: int, targeted: bool,
                  record: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """The authors' optional final search: on the segment [x_orig, x_out], ``steps`` points at the zero of the
    secant of the logit margin L (> 0 not adversarial) between the last non-adversarial end (low) and the last
    adversarial one (high), each replacing the end of its side; every adversarial one is recorded."""
    low, high = inputs, best.clone()
    margin_low, margin_high = clean_margin, best_margin
    for _ in range(steps):
        span = margin_low - margin_high
        # Only where the ends straddle the boundary (L(low) > 0 ≥ L(high)); elsewhere the point stays at high.
        t = torch.where((margin_low > 0) & (margin_high <= 0) & (span > 0),
                        margin_low / torch.where(span > 0, span, 1), 1)
        middle = (low + batch_view(t, low) * (high - low)).clamp(0, 1)
        with torch.no_grad():
            logits = model(middle)
        adversarial = record(middle, logits)
        margin = logit_margin(logits, labels, targeted=targeted)
        side = batch_view(adversarial, middle)
        high, margin_high = torch.where(side, middle, high), torch.where(adversarial, margin, margin_high)
        low, margin_low = torch.where(side, low, middle), torch.where(adversarial, margin_low, margin)


def fab_steps(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norm: str = "l2", steps: int = 100,
              restarts: int = 1, target_classes: int | None = None, eps: float | None = None,
              alpha_max: float = ALPHA_MAX, eta: float = ETA, beta: float = BETA, final_search: int = FINAL_SEARCH,
              targeted_rounds: int = TARGETED_ROUNDS, targeted: bool = False, generator: torch.Generator | None = None,
              callback: Callback | None = None) -> torch.Tensor:
    """``fab`` with a budget of 2 × ``steps`` passes per sample: the registry's ``steps`` (iterations of one
    forward and one backward, as for every other attack), so that ``edgewise benchmark --budget Q`` and the
    command line compare it at the same cost. The other keywords are :func:`fab`'s (named here, so that the
    command line's ``--attack-options`` can set them)."""
    check_positive("steps", steps, integer=True)
    return fab(model, inputs, labels, norm=norm, budget=2 * steps, restarts=restarts, target_classes=target_classes,
               eps=eps, alpha_max=alpha_max, eta=eta, beta=beta, final_search=final_search,
               targeted_rounds=targeted_rounds, targeted=targeted, generator=generator, callback=callback)
