"""APGDA: alternating projected gradient descent–ascent over K domains — Wang et al., *Adversarial Attack
Generation Empowered by Min-Max Optimization* (NeurIPS 2021, arXiv:1906.03563), Algorithm 1 and problem (1).

K domains i = 1..K each give an attack loss fᵢ(δ) (low = adversarial). The attack solves

    min_{δ ∈ X} max_{w ∈ P}  F(δ, w) = Σᵢ wᵢ fᵢ(δ) − (γ/2)‖w − 1/K‖²,

P the probability simplex and X the perturbation set (ℓp ball ∩ box). Each step t:

    δₜ = proj_X(δₜ₋₁ − α ε d(∇δ F(δₜ₋₁, wₜ₋₁)))      (descent, PGD's step)
    wₜ = proj_P(wₜ₋₁ + β ∇w F(δₜ, wₜ₋₁)),  ∇w F = (f₁(δₜ), …, f_K(δₜ)) − γ(wₜ₋₁ − 1/K)   (ascent)

with w₀ = 1/K. The ascent uses the new δₜ (alternating). The descent direction d is PGD's: sign(g) for ℓ∞ and
g/‖g‖₂ for ℓ0/ℓ1/ℓ2, and the step length is α·ε (α alone for ℓ0, whose ε counts values, not a length). D.2 gives
α without units; its values (α = 1/2 with ε = 0.03 for the ℓ∞ transformation attacks, Table A4) only make sense
as fractions of ε, and a normalized direction makes α independent of the models' logit scale. The authors'
published code has sign and bracket errors in these updates; this module follows the equations above.
``strategy="average"`` keeps w = 1/K fixed: the averaged baselines (ensemble PGD, expectation over transformation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from edgewise.attacks.base import Callback, steepest_direction
from edgewise.losses import is_adversarial, logit_margin
from edgewise.projections import NORMS, simplex
from edgewise.validation import check_choice, check_positive

Domain = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``domain(delta) -> (loss, fooled)``: fᵢ(δ) per group (G,) (differentiable, low = adversarial) and whether the
domain's input is adversarial (G,) bool."""

STRATEGIES = ("minmax", "average")
LOSSES = ("cw", "ce")
KAPPA = 50.0
"""κ of the C&W loss, its floor at −κ (D.2: "a confidence parameter κ = 50")."""

# D.2 of the supplement, "for Table 1" (the MNIST ensemble experiments; Fashion-MNIST has the same format):
# α (step_size), β (weight_step), γ (gamma) per norm. D.2's second set, "for Table 3" / A3 (CIFAR-10 ensembles:
# ℓ0 1, 1/150, 1; ℓ1 1/4, 1/100, 5; ℓ2 1/8, 1/100, 3; ℓ∞ 1/5, 1/50, 6), is passed explicitly when wanted.
DEFAULTS: dict[str, dict[str, float]] = {
    "l0": {"step_size": 1.0, "weight_step": 1 / 100, "gamma": 7.0},
    "l1": {"step_size": 1 / 4, "weight_step": 1 / 100, "gamma": 5.0},
    "l2": {"step_size": 1 / 10, "weight_step": 1 / 100, "gamma": 3.0},
    "linf": {"step_size": 1 / 4, "weight_step": 1 / 50, "gamma": 3.0},
}


@dataclass
class MinMaxResult:
    """What a min-max attack returns.

    ``adv``: the adversarial inputs (the shape of the attack's inputs). ``weights``: the domain weights w after the last
    step (G, K). ``history``: w at every step (steps + 1, G, K), history[0] = 1/K. ``fooled``: (G, K) bool, domain i
    fooled by ``adv``. ``clean_fooled``: (G, K) bool, domain i already wrong at δ = 0.
    """

    adv: torch.Tensor
    weights: torch.Tensor
    history: torch.Tensor
    fooled: torch.Tensor
    clean_fooled: torch.Tensor


def check_loss(loss: str, kappa: float | None) -> None:
    """``loss`` one of ``LOSSES``; ``kappa`` (None: ``KAPPA``) a number >= 0, given only with the C&W loss."""
    check_choice("loss", loss, LOSSES)
    if kappa is not None:
        check_positive("kappa", kappa, allow_zero=True)
        if loss != "cw":
            raise ValueError(f"kappa applies only to loss='cw' (the C&W margin floored at -kappa), got kappa={kappa} "
                             f"with loss={loss!r}")


def attack_loss(logits: torch.Tensor, labels: torch.Tensor, *, loss: str = "cw", kappa: float | None = None,
                targeted: bool = False) -> torch.Tensor:
    """fᵢ per sample, low = adversarial (D.2): C&W margin max(z_y − max_{j≠y} z_j, −κ) (κ: ``kappa``, None:
    ``KAPPA``), or −cross-entropy."""
    check_loss(loss, kappa)
    if loss == "cw":
        return logit_margin(logits, labels, targeted=targeted).clamp_min(-(KAPPA if kappa is None else kappa))
    cross_entropy = F.cross_entropy(logits, labels, reduction="none")
    return cross_entropy if targeted else -cross_entropy


def classifier_domain(model: Callable[[torch.Tensor], torch.Tensor], labels: torch.Tensor,
                      view: Callable[[torch.Tensor], torch.Tensor], *, loss: str, kappa: float | None,
                      targeted: bool) -> Domain:
    """The domain "``model`` on ``view(δ)``": its attack loss and whether it is fooled."""

    def domain(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(view(delta))
        return (attack_loss(logits, labels, loss=loss, kappa=kappa, targeted=targeted),
                is_adversarial(logits.detach(), labels, targeted=targeted))

    return domain


def check_minmax_options(*, norm: str, eps: float, steps: int, strategy: str, loss: str, kappa: float | None,
                         step_size: float | None, weight_step: float | None, gamma: float | None) -> None:
    """The hyper-parameter checks every min-max attack makes at entry."""
    check_choice("norm", norm, NORMS)
    check_positive("eps", eps)
    if norm == "l0" and eps != int(eps):
        # The l0 projection keeps floor(eps) values: eps=0.5 would be reported as a budget while nothing moved.
        raise ValueError(f"eps must be a whole number with norm 'l0' (the input values that may change), got {eps}")
    check_positive("steps", steps, integer=True)
    check_choice("strategy", strategy, STRATEGIES)
    check_loss(loss, kappa)
    for name, value in (("step_size", step_size), ("weight_step", weight_step), ("gamma", gamma)):
        if value is not None:
            check_positive(name, value, allow_zero=name == "gamma")


def apgda(
    domains: Sequence[Domain],
    delta: torch.Tensor,
    *,
    constraint: Callable[[torch.Tensor], torch.Tensor],
    compose: Callable[[torch.Tensor], torch.Tensor],
    norm: str,
    eps: float,
    steps: int,
    step_size: float | None = None,
    weight_step: float | None = None,
    gamma: float | None = None,
    strategy: str = "minmax",
    callback: Callback | None = None,
) -> MinMaxResult:
    """The one min-max core (Algorithm 1), generic over the domains.

    Args:
        domains: the K domains, ``domain(δ) -> (fᵢ(δ) (G,), fooled (G,))``.
        delta: δ₀ (G, ...), a point of X (zeros for the paper's attacks).
        constraint: proj_X, δ -> the projection of δ onto X.
        compose: δ -> the adversarial inputs it makes (returned as ``adv``).
        norm / eps: p and ε of X; they set the descent direction and step length (module docstring).
        steps: T, the number of descent–ascent iterations (T + 1 forwards and T backwards of every domain).
        step_size / weight_step / gamma: α (a fraction of ε), β and γ; None takes D.2's value for ``norm``.
        strategy: "minmax" (w updated by the ascent step) or "average" (w = 1/K throughout).
        callback: ``callback(step, {"weights", "losses", "fooled"})`` after each evaluation of the domains.

    Returns:
        ``MinMaxResult``; ``adv`` is ``compose`` of the best iterate per group: most domains fooled, ties broken
        by the lower sum of losses Σᵢ fᵢ (the same rule for both strategies).
    """
    defaults = DEFAULTS[norm]
    alpha = defaults["step_size"] if step_size is None else step_size
    beta = defaults["weight_step"] if weight_step is None else weight_step
    gamma_ = defaults["gamma"] if gamma is None else gamma
    length = alpha if norm == "l0" else alpha * eps
    count = len(domains)
    groups = delta.shape[0]
    uniform = torch.full((groups, count), 1 / count, dtype=delta.dtype, device=delta.device)
    weights = uniform.clone()
    history = [weights]
    delta = delta.detach()

    def evaluate(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        point = point.requires_grad_(True)
        pairs = [domain(point) for domain in domains]
        losses = torch.stack([loss for loss, _ in pairs], 1)  # (G, K)
        fooled = torch.stack([hit for _, hit in pairs], 1)
        return point, losses, fooled

    point, losses, fooled = evaluate(delta.clone())
    clean_fooled = best_fooled = fooled
    best_delta, best_count, best_total = delta, fooled.sum(1), losses.detach().sum(1)
    if callback is not None:
        callback(0, {"weights": weights, "losses": losses.detach(), "fooled": fooled})
    for step in range(1, steps + 1):
        # Descent on δ at (δₜ₋₁, wₜ₋₁): ∇δ Σᵢ wᵢ fᵢ(δ) (groups are independent, so their sum is differentiated).
        (gradient,) = torch.autograd.grad((weights * losses).sum(), point)
        delta = constraint(point.detach() - length * steepest_direction(gradient, norm))
        point, losses, fooled = evaluate(delta.clone())
        if strategy == "minmax":
            # Ascent on w at (δₜ, wₜ₋₁): ∇w F = f(δₜ) − γ (w − 1/K), then projection onto the simplex.
            weights = simplex(weights + beta * (losses.detach() - gamma_ * (weights - uniform)))
        history.append(weights)
        hits, total = fooled.sum(1), losses.detach().sum(1)
        better = (hits > best_count) | ((hits == best_count) & (total < best_total))
        best_delta = torch.where(better.view(-1, *([1] * (delta.dim() - 1))), delta, best_delta)
        best_count, best_total = torch.where(better, hits, best_count), torch.where(better, total, best_total)
        best_fooled = torch.where(better.unsqueeze(1), fooled, best_fooled)
        if callback is not None:
            callback(step, {"weights": weights, "losses": losses.detach(), "fooled": fooled})
    return MinMaxResult(adv=compose(best_delta).detach(), weights=weights, history=torch.stack(history),
                        fooled=best_fooled, clean_fooled=clean_fooled)
