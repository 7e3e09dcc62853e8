"""Minimal-distance form of any fixed-ε attack: a per-sample search over ε inside a budget of passes.

A budget attack (PGD, APGD) answers "is there an adversarial within ε?". Run ``binary_search_steps`` times with
ε chosen per sample, it answers "how far is the nearest adversarial?", and takes part in the minimal-norm
comparisons of the other attacks at the same number of forward + backward passes (the protocol of AttackBench,
Cinà et al., AAAI 2025, which searches ε the same way for its fixed-budget attacks):

- each round runs the attack at ε per sample; a success gives an upper bound, the measured ‖δ‖p of the returned
  point (at most ε, often smaller), a failure a lower bound ε;
- before the first success, ε doubles (capped at 1 for ℓ∞, the whole box); after it, ε bisects between the
  largest failing ε and the smallest distance found;
- ``upper`` starts the search from a known distance per sample (an adversarial found by another attack): the
  first round tries 0.9 × that distance and every round is spent on improving it rather than on finding it;
- without ``upper``, one forward at the inputs after the rounds: a clean error (targeted: an input already
  classified as its target) is at distance 0. The attack would return its highest-loss adversarial iterate
  instead, a moved point, and the search would end near 2^-rounds of the first ε rather than at 0.

The attack must take ``norm``, ``eps`` (a (B,) tensor), ``steps``, ``targeted``, ``generator`` and ``callback``,
report ``"adversarial"`` per sample in its callback state, and return an evaluated adversarial point where one
was seen (edgewise's ``pgd`` and ``apgd`` do).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

from edgewise.attacks.base import Callback, batch_view, check_attack_call
from edgewise.attacks.pgd import DEFAULT_EPS, check_eps
from edgewise.distances import lp
from edgewise.losses import is_adversarial
from edgewise.validation import check_choice, check_logits, check_positive

NORMS = ("l1", "l2", "linf")
_NORM_OF = {"l1": lp.l1, "l2": lp.l2, "linf": lp.linf}


def next_eps(eps: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, *, norm: str) -> torch.Tensor:
    """The next ε per sample: twice the last while no adversarial is known (ℓ∞: at most 1), else the midpoint
    of [largest failing ε, smallest distance found]."""
    doubled = 2 * eps
    if norm == "linf":
        doubled = doubled.clamp_max(1.0)
    # A search that reached 0 (a clean error) keeps a positive ε, which the attack requires.
    return torch.where(torch.isfinite(upper), (lower + upper) / 2, doubled).clamp_min(torch.finfo(eps.dtype).tiny)


def _check_takes_eps_and_norm(attack: Callable[..., torch.Tensor]) -> None:
    """A minimal-distance attack (ddn, fmn) failed deep inside with its own "unexpected keyword 'norm'"."""
    try:
        parameters = inspect.signature(attack).parameters
    except (TypeError, ValueError):  # a callable without a signature: its call will tell
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    missing = [name for name in ("eps", "norm") if name not in parameters]
    if missing:
        name = getattr(attack, "__name__", None) or getattr(getattr(attack, "func", None), "__name__", None)
        raise TypeError(f"attack must take the keywords eps and norm (a fixed-eps attack such as pgd or apgd), "
                        f"got {name or type(attack).__name__}")


def minimal(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    attack: Callable[..., torch.Tensor],
    norm: str = "l2",
    eps: float | torch.Tensor | None = None,
    upper: torch.Tensor | None = None,
    steps: int = 100,
    binary_search_steps: int = 10,
    targeted: bool = False,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Smallest-‖δ‖p adversarial examples found by a fixed-ε ``attack`` over a per-sample search of ε.

    Budget: ``binary_search_steps`` × ``steps`` forwards and backwards per sample (every round runs the attack on
    the whole batch, each sample at its own ε), and without ``upper`` one forward more, at the inputs. Returned
    per sample: the input itself where it is already adversarial, else the smallest adversarial found over the
    rounds, or the original input if none.

    Args:
        attack: the fixed-ε attack (e.g. ``edgewise.attacks.apgd``; bind its options with functools.partial).
        norm: "l1", "l2" or "linf". eps: the first ε, a number or a (B,) tensor (default
            ``pgd.DEFAULT_EPS[norm]``). upper: (B,) distances already reached by other means (inf: none; 0: the
            input is adversarial itself), or None; given, it stands for the check of the inputs, not made.
        steps: the attack's steps per round. binary_search_steps: the number of rounds.
        targeted: ``labels`` are targets. generator: passed to the attack.
        callback: ``callback(round, {"eps", "best_distance", "adversarial"})`` after each round.
    """
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator, callback=callback)
    if not callable(attack):
        raise TypeError(f"attack must be a fixed-eps attack function, got {type(attack).__name__}")
    _check_takes_eps_and_norm(attack)
    check_choice("norm", norm, NORMS)
    eps = DEFAULT_EPS[norm] if eps is None else eps
    check_eps(eps, inputs)
    check_positive("steps", steps, integer=True)
    check_positive("binary_search_steps", binary_search_steps, integer=True)
    batch = inputs.shape[0]
    if upper is not None and (not isinstance(upper, torch.Tensor) or upper.shape != (batch,)
                              or not upper.is_floating_point() or bool((upper < 0).any())):
        raise ValueError(f"upper must be None or a (B,) = ({batch},) floating-point tensor of distances >= 0, "
                         f"got {upper if not isinstance(upper, torch.Tensor) else tuple(upper.shape)}")
    distance = _NORM_OF[norm]
    best_norm = torch.full((batch,), math.inf, dtype=inputs.dtype, device=inputs.device)
    best_adv = inputs.clone()
    bound = best_norm if upper is None else upper.to(inputs.dtype)
    lower = torch.zeros_like(best_norm)
    current = torch.as_tensor(eps, dtype=inputs.dtype, device=inputs.device).expand(batch).clone()
    current = torch.where(torch.isfinite(bound), 0.9 * bound, current).clamp_min(torch.finfo(inputs.dtype).tiny)
    for search_round in range(binary_search_steps):
        seen = torch.zeros(batch, dtype=torch.bool, device=inputs.device)

        def record(step: int, state: dict[str, torch.Tensor]) -> None:
            nonlocal seen
            seen = seen | state["adversarial"]

        adv = attack(model, inputs, labels, norm=norm, eps=current, steps=steps, targeted=targeted,
                     generator=generator, callback=record)
        size = distance(inputs, adv)
        better = seen & (size < best_norm)
        best_norm = torch.where(better, size, best_norm)
        best_adv = torch.where(batch_view(better, inputs), adv, best_adv)
        bound = torch.minimum(bound, best_norm)
        lower = torch.where(seen, lower, torch.maximum(lower, current))
        if callback is not None:
            callback(search_round, {"eps": current, "best_distance": best_norm, "adversarial": seen})
        current = next_eps(current, lower, bound, norm=norm)
    if upper is not None:
        return best_adv
    # Last, not first: under a budget of passes (edgewise benchmark --budget) this is the forward it refuses, not
    # a step of the last round, and the budget's own record has seen the inputs at the attack's first step.
    with torch.no_grad():
        logits = model(inputs)
    check_logits(logits, labels)
    return torch.where(batch_view(is_adversarial(logits, labels, targeted=targeted), inputs), inputs, best_adv)
