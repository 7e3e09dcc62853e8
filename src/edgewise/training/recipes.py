"""Training recipes: what the loop minimizes on each clean batch.

A recipe is ``recipe(model, inputs, labels, *, generator, **options) -> TrainingBatch``, called with the model in
eval mode (the adversaries see the deterministic network, as in the DDN authors' training code); the loop then
minimizes Σₖ weightsₖ · CE(model(inputsₖ), labelsₖ) / B in train mode, B the clean batch size. Options are
keyword-only and recorded in the run's ``TrainConfig.recipe_options``; unknown options are a TypeError.

- ``standard``: empirical risk on clean inputs.
- ``pgd``: Madry et al. (ICLR 2018) min-max training, eq. (2): the loss of the PGD adversarial in the ε-ball.
- ``ddn``: DDN adversarial training (Rony et al., CVPR 2019, sec. 5, eq. 9): the loss of the DDN adversarial
  projected onto the ε-ball, next to the clean loss (sec. 6 "augment the training images with adversarial
  perturbations"; ``clean_weight=0`` is eq. 9 alone).
- ``relu_stability``: Xiao et al. (ICLR 2019) training for exact verification, ``pgd`` plus the RS loss and ℓ1
  weight regularization (``stability``).
- ``ampgd``, ``max``, ``avg``, ``msd``: training against several ℓp threats at once (``multinorm``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from edgewise.attacks.ddn import ddn as ddn_attack
from edgewise.attacks.pgd import DEFAULT_EPS
from edgewise.attacks.pgd import pgd as pgd_attack
from edgewise.projections import NORMS, project
from edgewise.training.multinorm import ampgd, average, maximum, msd
from edgewise.training.stability import interval_bounds, l1_weights, relu_stability_loss
from edgewise.validation import check_choice, check_fraction, check_positive


@dataclass(frozen=True)
class TrainingBatch:
    """Inputs (N, ...), labels (N,) and per-example loss weights (N,): the loss is Σ weights · CE / B, plus
    ``penalty`` (a scalar in the graph of the model's parameters, e.g. a regularizer) where there is one."""

    inputs: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor
    penalty: torch.Tensor | None = None


Recipe = Callable[..., TrainingBatch]


def clean_batch(inputs: torch.Tensor, labels: torch.Tensor, weight: float = 1.0) -> TrainingBatch:
    return TrainingBatch(inputs, labels, torch.full(labels.shape, weight, dtype=inputs.dtype, device=inputs.device))


def join(*batches: TrainingBatch) -> TrainingBatch:
    """One batch holding several (the loop runs a single forward over all of them; their penalties add up)."""
    penalties = [b.penalty for b in batches if b.penalty is not None]
    return TrainingBatch(torch.cat([b.inputs for b in batches]), torch.cat([b.labels for b in batches]),
                         torch.cat([b.weights for b in batches]), torch.stack(penalties).sum() if penalties else None)


def standard(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *,
             generator: torch.Generator) -> TrainingBatch:
    """Empirical risk minimization on clean inputs."""
    return clean_batch(inputs, labels)


def pgd(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator,
        norm: str = "linf", eps: float | None = None, steps: int = 10, step_size: float | None = None) -> TrainingBatch:
    """PGD adversarial training (Madry et al. 2018): CE of the ``steps``-step PGD adversarial (random start)."""
    adv = pgd_attack(model, inputs, labels, norm=norm, eps=eps, steps=steps, step_size=step_size,
                     random_init=True, generator=generator)
    return clean_batch(adv, labels)


def ddn(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator,
        eps: float = 2.4, steps: int = 100, clean_weight: float = 0.5, levels: int | None = 256) -> TrainingBatch:
    """DDN adversarial training (DDN paper, sec. 5-6): x̃ = DDN adversarial, δ projected onto ‖δ‖₂ ≤ ε (eq. 9).

    The paper uses 100 DDN steps and ε = 2.4 on MNIST. The loss is (1 − c)·CE(x̃) + c·CE(x), c = ``clean_weight``.
    A sample where DDN found no adversarial within its budget contributes its clean input to the adversarial term.
    """
    check_positive("eps", eps)
    if clean_weight != 0:
        check_fraction("clean_weight", clean_weight)
    adv = ddn_attack(model, inputs, labels, steps=steps, levels=levels, generator=generator)
    adv = inputs + project(adv - inputs, inputs, norm="l2", eps=eps)
    adversarial = clean_batch(adv, labels, 1 - clean_weight)
    return join(adversarial, clean_batch(inputs, labels, clean_weight)) if clean_weight else adversarial


def relu_stability(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator,
                   norm: str = "linf", eps: float | None = None, steps: int = 10, step_size: float | None = None,
                   rs_weight: float = 1.0, l1_weight: float = 1e-4) -> TrainingBatch:
    """Training for verification (Xiao et al., ICLR 2019): the ``pgd`` recipe's adversarial loss plus
    ``rs_weight`` × the RS loss of the clean inputs' ε-ball (``stability.relu_stability_loss``, interval bounds)
    plus ``l1_weight`` × Σ|W|. ℓ∞ only: the interval bounds are those of the ℓ∞ ball."""
    check_choice("norm", norm, ("linf",))
    radius = DEFAULT_EPS[norm] if eps is None else eps
    check_positive("rs_weight", rs_weight, allow_zero=True)
    check_positive("l1_weight", l1_weight, allow_zero=True)
    adversarial = pgd(model, inputs, labels, generator=generator, norm=norm, eps=radius, steps=steps,
                      step_size=step_size)
    penalty = (rs_weight * relu_stability_loss(interval_bounds(model, inputs, radius))
               + l1_weight * l1_weights(model))
    return replace(adversarial, penalty=penalty)


def threat_lists(norms: Any, eps: Any) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The multi-norm recipes' ``norms`` (a list of norm names) and ``eps`` (one radius per norm, or None: their
    ``DEFAULT_EPS``) as tuples; a string or a single number is a TypeError (a string would be split into letters).
    Their lengths and values are checked by ``multinorm.check_threats``."""
    if isinstance(norms, str) or not isinstance(norms, (list, tuple)):
        raise TypeError(f"norms must be a list of norm names, got {type(norms).__name__}")
    for norm in norms:
        check_choice("norms", norm, NORMS)
    if eps is None:
        return tuple(norms), tuple(DEFAULT_EPS[norm] for norm in norms)
    if isinstance(eps, str) or not isinstance(eps, (list, tuple)):
        raise TypeError(f"eps must be a list of {len(norms)} numbers (one per norm of norms), got "
                        f"{type(eps).__name__}")
    return tuple(norms), tuple(eps)


def _multinorm(method: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]], description: str) -> Recipe:
    def recipe(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator,
               norms: tuple[str, ...] = ("linf", "l2", "l1"), eps: tuple[float, ...] | None = None,
               **options: Any) -> TrainingBatch:
        chosen, radii = threat_lists(norms, eps)
        adv, repeated, weights = method(model, inputs, labels, norms=chosen, eps=radii, generator=generator,
                                        **options)
        return TrainingBatch(adv, repeated, weights)

    recipe.__doc__ = description
    recipe.__signature__ = _merged_signature(recipe, method)  # type: ignore[attr-defined]
    return recipe


def _merged_signature(recipe: Callable[..., Any], method: Callable[..., Any]) -> inspect.Signature:
    """The recipe's own parameters plus the method's options, so unknown options are caught by ``make_recipe``."""
    own = [p for p in inspect.signature(recipe).parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = [p for name, p in inspect.signature(method).parameters.items()
             if p.kind is p.KEYWORD_ONLY and name not in {q.name for q in own}]
    return inspect.Signature(own + extra)


RECIPES: dict[str, Recipe] = {
    "standard": standard,
    "pgd": pgd,
    "ddn": ddn,
    "relu_stability": relu_stability,
    "ampgd": _multinorm(ampgd, "AMPGD generalized adversarial training (min-max supplement, Algorithm 3)."),
    "max": _multinorm(maximum, "MAX (Tramèr & Boneh 2019): train on the worst of the per-norm PGD adversarials."),
    "avg": _multinorm(average, "AVG (Tramèr & Boneh 2019): train on all per-norm PGD adversarials, weight 1/K."),
    "msd": _multinorm(msd, "MSD (Maini et al. 2020): one PGD whose every step takes the best ℓp steepest step."),
}


def threat_models(name: str, options: dict[str, Any]) -> list[tuple[str, float]]:
    """The (norm, ε) threat models recipe ``name`` trains against with ``options`` (none for ``standard``)."""
    parameters = inspect.signature(RECIPES[name]).parameters
    bound = {key: p.default for key, p in parameters.items() if p.default is not p.empty} | options
    if "norms" in bound:
        norms, radii = threat_lists(bound["norms"], bound["eps"])
        return list(zip(norms, radii, strict=True))
    if name == "ddn":
        return [("l2", float(bound["eps"]))]
    if "norm" in bound:
        return [(bound["norm"], DEFAULT_EPS[bound["norm"]] if bound["eps"] is None else float(bound["eps"]))]
    return []


def make_recipe(name: str, options: dict[str, Any]) -> Callable[..., TrainingBatch]:
    """The recipe ``name`` with ``options`` bound; unknown names are a ValueError, unknown options a TypeError."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {name!r}")
    recipe = RECIPES[name]
    accepted = {n for n, p in inspect.signature(recipe).parameters.items() if p.kind is p.KEYWORD_ONLY} - {"generator"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"recipe {name!r} takes no option(s) {unknown}; it takes {sorted(accepted)}")

    def bound(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *,
              generator: torch.Generator) -> TrainingBatch:
        return recipe(model, inputs, labels, generator=generator, **options)

    return bound
