"""``auto``: one call that spends a budget of Q forward + backward passes per sample across complementary minimal
attacks and returns the per-sample best, for a norm.

No single attack is best on every model (AttackBench, Cinà et al., AAAI 2025): FMN is among the strongest on
standard models, the ε search of APGD (``apgd_minimal``) on adversarially trained ones, where a boundary-walking
attack stalls. ``auto`` runs them in turn inside one budget (AttackBench's BoMN spends the full budget on every
member instead, costing the sum of its parts):

1. FMN (ℓ1, ℓ2, ℓ∞) with the first share of the steps, on every sample;
2. APGD in minimal form on the samples FMN left above 0 (a clean error cannot improve), its ε search starting
   from FMN's distance (``minimal(upper=...)``): every round tries to beat the best point so far, or, where FMN
   found nothing, doubles ε until APGD does;
3. the per-sample best of the two.

ℓ0: σ-zero with the whole budget (edgewise has one ℓ0 attack). The shares are measured on held-out zoo images
(benchmarks/auto_design.py, results in benchmarks/results/auto_design_*.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from edgewise.attacks.apgd import apgd
from edgewise.attacks.base import batch_view, check_attack_call
from edgewise.attacks.fmn import fmn
from edgewise.attacks.minimal import minimal
from edgewise.attacks.sigma_zero import sigma_zero
from edgewise.distances import lp
from edgewise.validation import check_choice, check_positive

NORMS = ("l0", "l1", "l2", "linf")
FIRST_SHARE = 0.5    # the fraction of the steps FMN gets; APGD-minimal the rest
SEARCH_ROUNDS = 5    # rounds of APGD-minimal's ε search
_NORM_OF = {"l1": lp.l1, "l2": lp.l2, "linf": lp.linf}


def plan(budget: int) -> tuple[int, int, int]:
    """(FMN steps, APGD-minimal rounds, APGD steps per round) for Q = ``budget`` passes per sample: Q // 2 steps,
    one forward and one backward each, split FIRST_SHARE / rest; never more than Q passes."""
    steps = budget // 2
    first = max(int(FIRST_SHARE * steps), 1)
    rest = steps - first
    rounds = min(SEARCH_ROUNDS, rest)
    return first, rounds, (rest // rounds if rounds else 0)


def portfolio(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    first: Callable[..., torch.Tensor],
    norm: str,
    budget: int,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``first`` with FIRST_SHARE of the Q / 2 steps, then APGD-minimal below its distances on the samples it
    left above 0, and the per-sample best (``auto`` with another first member; the design benchmark compares them).

    ``first(model, inputs, labels, *, steps, targeted, generator, callback)`` minimizes ``norm`` and reports
    ``"adversarial"`` in its callback state (FMN, DDN).
    """
    first_steps, rounds, per_round = plan(budget)
    clean_error: list[torch.Tensor] = []

    def record(step: int, state: dict[str, torch.Tensor]) -> None:
        if step == 0:  # the first forward is at δ = 0: adversarial there means a clean error
            clean_error.append(state["adversarial"])

    best = first(model, inputs, labels, steps=first_steps, targeted=targeted, generator=generator, callback=record)
    distance = _NORM_OF[norm]
    found = (best != inputs).flatten(1).any(1)
    best_norm = torch.where(found, distance(inputs, best), math.inf)
    open_ = ~clean_error[0]  # a clean error is at distance 0: nothing left to improve there
    if rounds == 0 or not bool(open_.any()):
        return best
    index = open_.nonzero().squeeze(1)
    refined = minimal(model, inputs[index], labels[index], attack=apgd, norm=norm, upper=best_norm[index],
                      steps=per_round, binary_search_steps=rounds, targeted=targeted, generator=generator)
    improved = (refined != inputs[index]).flatten(1).any(1)
    refined_norm = torch.where(improved, distance(inputs[index], refined), math.inf)
    better = refined_norm < best_norm[index]
    best[index] = torch.where(batch_view(better, refined), refined, best[index])
    return best


def auto(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str,
    budget: int,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The smallest-‖δ‖p adversarial examples of a portfolio of attacks within Q = ``budget`` forward + backward
    passes per sample (AttackBench's count: a 500-step attack costs 1,000).

    Returned per sample: the best point of the members, or the original input if none found an adversarial.

    Args:
        norm: "l0", "l1", "l2" or "linf". budget: Q, an int >= 2 (>= 4 for ℓ1/ℓ2/ℓ∞ to run both members).
        targeted: ``labels`` are targets. generator: passed to the members.
    """
    check_attack_call(model, inputs, labels, generator=generator)
    check_choice("norm", norm, NORMS)
    check_positive("budget", budget, integer=True)
    if budget < 2:
        raise ValueError(f"budget must be >= 2 (one forward and one backward per step), got {budget}")
    if norm == "l0":
        return sigma_zero(model, inputs, labels, steps=budget // 2, targeted=targeted, generator=generator)
    return portfolio(model, inputs, labels, first=functools.partial(fmn, norm=norm), norm=norm, budget=budget,
                     targeted=targeted, generator=generator)
