"""Ensemble attack: one perturbation per input that fools K models at once — Wang et al. (NeurIPS 2021),
sec. 3 "robust adversarial attack over model ensembles", Table 1 / Table A3 of the supplement.

Domains are the models: fᵢ(δ) = f(Mᵢ(x + δ), y), δ ∈ X = {‖δ‖p ≤ ε, x + δ ∈ [0, 1]}; the weights w (one simplex
point per input) say which model the attack finds hardest. ``strategy="average"`` is ensemble PGD (w = 1/K).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch

from edgewise.attacks.base import Callback, check_attack_call
from edgewise.attacks.minmax.apgda import MinMaxResult, apgda, check_minmax_options, classifier_domain
from edgewise.projections import project
from edgewise.validation import check_logits

Model = Callable[[torch.Tensor], torch.Tensor]


def check_models(models: Sequence[Model], inputs: torch.Tensor, labels: torch.Tensor, callback: Callback | None,
                 *, targeted: bool, name: str = "models") -> None:
    """``models`` must be a non-empty sequence of classifiers in eval mode returning logits for ``inputs``;
    ``name``: the argument named in errors ("model" for the attacks on one model)."""
    if isinstance(models, torch.nn.Module) or not isinstance(models, Sequence) or len(models) == 0:
        raise TypeError(f"models must be a non-empty list of models, got {type(models).__name__}")
    for index, model in enumerate(models):
        check_attack_call(model, inputs, labels, targeted=targeted, callback=callback,
                          name=f"models[{index}]" if name == "models" else name)
        with torch.no_grad():
            check_logits(model(inputs), labels)


def ensemble_attack(
    models: Sequence[Model],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "linf",
    eps: float = 0.2,
    steps: int = 50,
    step_size: float | None = None,
    weight_step: float | None = None,
    gamma: float | None = None,
    strategy: str = "minmax",
    loss: str = "cw",
    kappa: float | None = None,
    targeted: bool = False,
    callback: Callback | None = None,
) -> MinMaxResult:
    """APGDA over an ensemble of K models (domain i = model i).

    Args:
        models: M₁..M_K, each mapping inputs in [0, 1] to logits.
        inputs / labels: x (B, ...) and y (B,) (targets when ``targeted``).
        norm / eps: p and ε of X (for "l0", ε is the number of input values that may change).
        steps: T (50 for ensembles in D.2). step_size / weight_step / gamma: α, β, γ (None: D.2 for ``norm``).
        strategy: "minmax" (APGDA) or "average" (ensemble PGD, w = 1/K). loss: "cw" (κ = ``kappa``, None: 50)
            or "ce" (no κ: ``kappa`` is refused).
        callback: see ``apgda``.

    Returns:
        ``MinMaxResult``: ``adv`` (B, ...), ``weights`` (B, K), ``history`` (T + 1, B, K), ``fooled`` (B, K).
    """
    check_models(models, inputs, labels, callback, targeted=targeted)
    check_minmax_options(norm=norm, eps=eps, steps=steps, strategy=strategy, loss=loss, kappa=kappa,
                         step_size=step_size, weight_step=weight_step, gamma=gamma)

    def view(delta: torch.Tensor) -> torch.Tensor:
        return inputs + delta

    domains = [classifier_domain(model, labels, view, loss=loss, kappa=kappa, targeted=targeted) for model in models]
    return apgda(domains, torch.zeros_like(inputs), constraint=partial(project, x=inputs, norm=norm, eps=eps),
                 compose=view, norm=norm, eps=eps, steps=steps, step_size=step_size, weight_step=weight_step,
                 gamma=gamma, strategy=strategy, callback=callback)
