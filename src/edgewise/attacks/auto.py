"""``auto``: one call that spends a budget of Q forward + backward passes per sample across complementary minimal
attacks and returns the per-sample best, for a norm.

No single attack is best on every model (AttackBench, Cinà et al., AAAI 2025): boundary-walking attacks (DDN,
FMN, ALMA) are among the strongest on standard models, the ε search of APGD (``apgd_minimal``) on adversarially
trained ones, where they stall. ``auto`` runs a plan of stages in turn inside one budget (AttackBench's BoMN
spends the full budget on every member instead, costing the sum of its parts):

0. one forward at the clean inputs: a clean error is at distance 0 and gets nothing more;
1. each stage gets its share of the remaining steps (one forward and one backward each) and runs on the samples
   still open; a from-scratch member (``"fmn"``, ``"ddn"``, ``"alma"``, ``"sigma_zero"``, ``"fab_t"``: FAB-T over
   the 9 most likely other classes within the stage's 2 passes per step; with targets, FAB towards the target)
   starts at the input,
   ``"apgd"`` is APGD in minimal form whose ε search starts from the best distance so far
   (``minimal(upper=...)``): every round tries to beat it, or, where nothing was found yet, doubles ε;
   ``"fmn_best"`` is FMN started at the best point so far (δ₀ its perturbation, ε₀ its distance: FMN's ε-steps
   shrink it from there, and its δ-steps move it along the boundary, which an ε search does not; where nothing
   was found yet, from the input); ``"sigma_zero_best"`` (ℓ0) is σ-zero started alike at the best point, whose
   thresholding sparsifies its support further and whose margin step can move it to other elements;
   ``"line"`` bisects the segment from the input to the best point (:func:`line_search`); ``"prune"`` (ℓ0)
   saturates the best point's changed elements and undoes them one per forward, least important first, where
   the point stays adversarial (:func:`prune`); ``"swap"`` (ℓ0) trades two of its changed elements for one new
   one where the point stays adversarial, guided by the gradient, a new backward only where the point moved
   (:func:`swap_search`); ``"local"`` shrinks
   random blocks of the best point's perturbation, one proposal per forward, kept where the point stays
   adversarial (:func:`local_search`, decision-based);
2. the per-sample best point over the stages.

The first forward comes with a backward (where the budget allows): a sample whose logit margin has an exactly
zero gradient at its input (a non-differentiable input quantization, Athalye et al. 2018, sec. 4.1) leaves
gradient attacks blind, stepping at random. The same backward shows which modules block it (a non-zero gradient
at their output, exactly zero at their input, an output of the input's shape): that sample runs the usual plan
with those modules' backward replaced by the identity (the straight-through estimator, BPDA's identity case,
:func:`~edgewise.models.wrappers.straight_through`; their forward is unchanged, so every point is judged by the
model itself). Where no module can be bypassed (the blocking is inside one module's forward with others), it
gets ``MASKED_PLANS[norm]``: a random search to find an adversarial point and the decision-based local search
to shrink it.

The plans per norm (``PLANS``, ``MASKED_PLANS``) were chosen from measurements on design images of the zoo
(``benchmarks/auto_design.py``, results in ``benchmarks/results/auto_design_*.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from edgewise.attacks.alma import alma
from edgewise.attacks.apgd import apgd
from edgewise.attacks.base import batch_view, check_attack_call
from edgewise.attacks.ddn import ddn
from edgewise.attacks.fab import fab_steps
from edgewise.attacks.fmn import fmn
from edgewise.attacks.minimal import minimal
from edgewise.attacks.sigma_zero import sigma_zero
from edgewise.distances import lp
from edgewise.losses import is_adversarial, logit_margin
from edgewise.models.wrappers import straight_through
from edgewise.validation import check_choice, check_logits, check_positive

NORMS = ("l0", "l1", "l2", "linf")
SEARCH_ROUNDS = 5  # rounds of the "apgd" stage's ε search
FAB_TARGETS = 9  # the "fab_t" stage's target classes (AutoAttack's FAB-T)
_NORM_OF = {"l0": lp.l0, "l1": lp.l1, "l2": lp.l2, "linf": lp.linf}

Stage = tuple[str, float] | tuple[str, float, Mapping[str, float]]
"""(member, share) or (member, share, options): a member of ``MEMBERS``, the fraction of the steps it gets (the
last stage: the rest) and keyword options of a from-scratch member (another setting of the same attack, for
diversity)."""

PLANS: dict[str, tuple[Stage, ...]] = {
    "l0": (("sigma_zero", 0.6), ("prune", 0.02), ("swap", 0.38)),
    "l1": (("fab_t", 0.25), ("alma", 0.2), ("fmn", 0.2), ("apgd", 0.1), ("fmn_best", 0.15), ("local", 0.1)),
    "l2": (("alma", 0.2), ("ddn", 0.15), ("fmn", 0.15), ("fab_t", 0.2), ("line", 0.02), ("apgd", 0.08),
           ("fmn_best", 0.1), ("local", 0.1)),
    "linf": (("fmn", 0.2), ("fmn", 0.2, {"step_size": 10.0}), ("fab_t", 0.2), ("line", 0.02), ("apgd", 0.18),
             ("fmn_best", 0.1), ("local", 0.1)),
}
# Where the gradient at the input is exactly zero and no module can be bypassed, FMN's and DDN's steps are random
# (their fallback), so they are the random search that finds a first adversarial point; the local search then
# shrinks it with no gradient. Two rounds: the second search finds points where the first did not (about 3% more
# samples on the design images).
MASKED_PLANS: dict[str, tuple[Stage, ...]] = {
    "l1": (("fmn", 0.2), ("local", 0.3), ("fmn", 0.2), ("local", 0.3)),
    "l2": (("ddn", 0.2), ("local", 0.3), ("ddn", 0.2), ("local", 0.3)),
    "linf": (("fmn", 0.2), ("local", 0.3), ("fmn", 0.2), ("local", 0.3)),
    "l0": PLANS["l0"],  # no decision-based ℓ0 search: the usual plan
}
SHRINK = {"l1": 0.0, "l2": 0.5, "linf": 0.0}  # the local search's factor on a block (ℓ1: zeroed, sparser)

# The members that start from scratch, and the norms each minimizes.
_FROM_SCRATCH: dict[str, tuple[Callable[..., torch.Tensor], tuple[str, ...]]] = {
    "fmn": (fmn, ("l1", "l2", "linf")),
    "fab_t": (fab_steps, ("l1", "l2", "linf")),
    "ddn": (ddn, ("l2",)),
    "alma": (alma, ("l1", "l2")),
    "sigma_zero": (sigma_zero, ("l0",)),
}
# From-scratch members started at the best point so far instead of the input: name -> the member restarted.
_RESTARTED = {"fmn_best": "fmn", "sigma_zero_best": "sigma_zero"}
# The members that start from the best point so far, and their norms.
_FROM_BEST: dict[str, tuple[str, ...]] = {"apgd": ("l1", "l2", "linf"), "line": ("l1", "l2", "linf"),
                                          "local": ("l1", "l2", "linf"), "prune": ("l0",), "swap": ("l0",),
                                          **{name: _FROM_SCRATCH[member][1] for name, member in _RESTARTED.items()}}
_WITH_OPTIONS = (*_FROM_SCRATCH, *_RESTARTED)
_NEEDS_A_POINT = ("line", "prune", "swap", "local")  # they only improve an adversarial point, where one was found
MEMBERS = (*_FROM_SCRATCH, *_FROM_BEST)


def stage_steps(stages: Sequence[Stage], steps: int) -> list[int]:
    """The steps of each stage out of ``steps``: ⌊share × steps⌋, the last stage the rest (so they sum to
    ``steps``)."""
    counts = [int(stage[1] * steps) for stage in stages[:-1]]
    return [*counts, steps - sum(counts)]


def check_stages(stages: Sequence[Stage], norm: str) -> None:
    if not stages:
        raise ValueError("stages must name at least one (member, share), got none")
    for stage in stages:
        if not (isinstance(stage, tuple) and len(stage) in (2, 3) and stage[0] in MEMBERS
                and isinstance(stage[1], (int, float)) and 0 < stage[1] <= 1
                and (len(stage) == 2 or (isinstance(stage[2], Mapping) and stage[0] in _WITH_OPTIONS))):
            raise ValueError(f"stages must be (member, share) or (member, share, options), member one of "
                             f"{list(MEMBERS)}, share in (0, 1], options a mapping for the members "
                             f"{list(_WITH_OPTIONS)}, got {stage!r}")
        name = stage[0]
        norms = _FROM_SCRATCH[name][1] if name in _FROM_SCRATCH else _FROM_BEST[name]
        if norm not in norms:
            raise ValueError(f"stages: member {name!r} does not minimize norm {norm!r} (it takes {list(norms)})")
    if sum(stage[1] for stage in stages[:-1]) > 1:
        raise ValueError(f"stages: the shares before the last must sum to at most 1, got {list(stages)}")


def saturated(inputs: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Each changed element moved to the end of the box its change points to (xᵢ + δᵢ → 1 where δᵢ > 0, → 0 where
    δᵢ < 0): the same changed elements, each changed as far as the box allows."""
    delta = points - inputs
    return torch.where(delta > 0, 1.0, torch.where(delta < 0, 0.0, inputs))


def prune(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, best: torch.Tensor, *, passes: int,
          targeted: bool) -> torch.Tensor:
    """ℓ0 pruning of adversarial points ``best``. ℓ0 does not see how far an element changes, so the changed
    elements are first saturated (:func:`saturated`): where the saturated point is still adversarial (usually by a
    wider logit margin, which leaves more elements to undo) it replaces the point. One forward and backward there
    also rank the changed elements by |δᵢ ∂L/∂xᵢ| (L the logit margin: the first-order change of L when δᵢ is
    undone); then each forward undoes the next-ranked element of every sample, least important first, and keeps
    the change where the point stays adversarial. At most ``passes`` passes per sample (>= 3 to try one element);
    returns the pruned points."""
    full = saturated(inputs, best.detach()).requires_grad_(True)
    logits = model(full)
    margin = logit_margin(logits, labels, targeted=targeted)
    (gradient,) = torch.autograd.grad(margin.sum(), full)
    wider = is_adversarial(logits.detach(), labels, targeted=targeted)
    start = torch.where(batch_view(wider, inputs), full.detach(), best.detach())
    flat = (start - inputs).flatten(1)
    changed = flat != 0
    score = torch.where(changed, (flat * gradient.flatten(1)).abs(), math.inf)
    order = score.argsort(dim=1)
    candidates = changed.sum(1)
    current = start.clone().flatten(1)
    original = inputs.flatten(1)
    for trial in range(min(passes - 2, int(candidates.max()) if candidates.numel() else 0)):
        rows = (candidates > trial).nonzero().squeeze(1)
        column = order[rows, trial]
        attempt = current[rows].clone()
        attempt[torch.arange(len(rows)), column] = original[rows, column]
        with torch.no_grad():
            keep = is_adversarial(model(attempt.view(-1, *inputs.shape[1:])), labels[rows], targeted=targeted)
        current[rows[keep]] = attempt[keep]
    return current.view_as(inputs)


def swap_search(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, best: torch.Tensor, *,
                passes: int, targeted: bool) -> torch.Tensor:
    """ℓ0 local search from adversarial points ``best``, at most ``passes`` passes per sample. A forward and backward
    at the current point give its logit margin L (< 0: adversarial) and ∂L/∂x, and with them the first-order
    change of L for undoing a changed element i, gᵢ (xᵢ − x'ᵢ), and for saturating an unchanged element k, to the
    end of the box that lowers L, g_k (e_k − x_k). In rounds of two forwards, the two cheapest changed elements
    i₁, i₂ and the best unchanged k not tried before make two proposals: undo i₁ and i₂ and set k (one changed
    element fewer), kept where adversarial; else undo i₁ and set k (as many), kept where adversarial with a
    lower L (a wider margin for the next rounds). A k that neither proposal kept is not proposed again until the
    point moves; until it moves its gradient still holds, so the next round proposes the next k without another
    backward. Every kept proposal lowers (changed elements, L) in lexicographic order, so the search never
    cycles. Returns the points (``best`` where nothing was kept)."""
    original = inputs.flatten(1)
    current = best.detach().flatten(1).clone()
    tried = torch.zeros_like(current, dtype=torch.bool)
    remaining = torch.full((len(current),), passes, device=current.device)
    stale = torch.ones_like(remaining, dtype=torch.bool)  # no gradient at the current point yet
    margin = torch.zeros(len(current), dtype=current.dtype, device=current.device)
    slope = torch.zeros_like(current)
    while True:
        rows = (stale & (remaining >= 4)).nonzero().squeeze(1)  # a gradient, then at least one round
        if len(rows):
            point = current[rows].view(-1, *inputs.shape[1:]).clone().requires_grad_(True)
            margins = logit_margin(model(point), labels[rows], targeted=targeted)
            (gradient,) = torch.autograd.grad(margins.sum(), point)
            margin[rows], slope[rows] = margins.detach(), gradient.flatten(1)
            stale[rows], remaining[rows] = False, remaining[rows] - 2
        rows = (~stale & (remaining >= 2)).nonzero().squeeze(1)
        if not len(rows):
            return current.view_as(inputs)
        current[rows], moved, tried_k = _swap_round(model, original[rows], labels[rows], current[rows], tried[rows],
                                                    margin[rows], slope[rows], shape=inputs.shape[1:],
                                                    targeted=targeted)
        remaining[rows] = torch.where(tried_k < 0, 0, remaining[rows] - 2)  # nothing left to try: stop
        stale[rows[moved]] = True
        tried[rows[moved]] = False
        waiting = rows[~moved & (tried_k >= 0)]
        tried[waiting, tried_k[~moved & (tried_k >= 0)]] = True


def _swap_round(model: nn.Module, original: torch.Tensor, labels: torch.Tensor, current: torch.Tensor,
                tried: torch.Tensor, margin: torch.Tensor, slope: torch.Tensor, *, shape: torch.Size,
                targeted: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round of :func:`swap_search` on flat rows. Returns the rows' points (a kept proposal or ``current``),
    which rows moved and the k proposed per row (−1 where no k is left: those rows are not queried)."""
    current = current.clone()
    changed = current != original
    undo_cost = torch.where(changed, slope * (original - current), math.inf)
    extreme = torch.where(slope > 0, 0.0, 1.0).to(current.dtype)
    set_gain = torch.where(changed | tried, math.inf, slope * (extreme - original))
    index = torch.arange(len(current), device=current.device)
    k = set_gain.argmin(1)
    count = changed.sum(1)
    usable = torch.isfinite(set_gain[index, k]) & (count >= 1)
    moved = torch.zeros_like(usable)
    if bool(usable.any()):
        rows, k_rows = index[usable], k[usable]
        first, second = undo_cost[rows].topk(2, dim=1, largest=False).indices.unbind(1)
        as_many = current[rows].clone()
        as_many[index[:len(rows)], first] = original[rows, first]
        as_many[index[:len(rows)], k_rows] = extreme[rows, k_rows]
        fewer = as_many.clone()
        fewer[index[:len(rows)], second] = original[rows, second]
        with torch.no_grad():
            logits_fewer = model(fewer.view(-1, *shape))
            logits_same = model(as_many.view(-1, *shape))
        take_fewer = (count[rows] >= 2) & is_adversarial(logits_fewer, labels[rows], targeted=targeted)
        take_same = (~take_fewer & is_adversarial(logits_same, labels[rows], targeted=targeted)
                     & (logit_margin(logits_same, labels[rows], targeted=targeted) < margin[rows]))
        current[rows] = torch.where(take_fewer.unsqueeze(1), fewer,
                                    torch.where(take_same.unsqueeze(1), as_many, current[rows]))
        moved[rows] = take_fewer | take_same
    return current, moved, torch.where(usable, k, -1)


def line_search(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, best: torch.Tensor, *, passes: int,
                targeted: bool) -> torch.Tensor:
    """Bisection of t ∈ [0, 1] on the segment x + t (best − x) from the inputs to adversarial points ``best``:
    each forward halves the bracket [t₋, t₊] whose upper end is adversarial (t₊ = 1 at the start). One forward
    per pass, ``passes`` per sample; returns x + t₊ (best − x). Where the boundary is near the point (a minimal
    attack's result) it moves little; where gradients are masked (an input quantization) and an attack found
    only a far point, a random direction's, it brings it to the boundary along that ray."""
    delta = (best - inputs).detach()
    low = torch.zeros(inputs.shape[0], dtype=inputs.dtype, device=inputs.device)
    high = torch.ones_like(low)
    for _ in range(passes):
        middle = (low + high) / 2
        with torch.no_grad():
            adversarial = is_adversarial(model(inputs + batch_view(middle, delta) * delta), labels,
                                         targeted=targeted)
        high, low = torch.where(adversarial, middle, high), torch.where(adversarial, low, middle)
    return (inputs + batch_view(high, delta) * delta).clamp(0, 1)


def local_search(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, best: torch.Tensor, *, passes: int,
                 norm: str, targeted: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Decision-based shrinking of adversarial points ``best`` (no gradient: one forward per proposal, ``passes``
    per sample). Each proposal multiplies a random block of δ = best − x by ``SHRINK[norm]`` (each changed
    element drawn with probability f, at least one) and is kept where the point stays adversarial and ‖δ‖p
    decreases; f grows ×1.5 after a kept proposal and shrinks ×0.7 after a refused one, so the block fits what
    the sample's boundary allows (the success-rate rule of evolution strategies and of the Boundary Attack,
    Brendel et al. 2018). For ℓ∞, which a block does not shrink, every second proposal instead clips δ to
    (1 − η) ‖δ‖∞ (η adapted alike), and a block is kept where ‖δ‖∞ does not grow. Moving elements towards x keeps
    the points in the box. Returns the shrunk points."""
    distance = _NORM_OF[norm]
    original = inputs.flatten(1)
    delta = (best - inputs).detach().flatten(1)
    size = distance(original, original + delta)
    fraction = torch.full_like(size, 0.3)
    eta = torch.full_like(size, 0.05)
    moved = torch.zeros_like(size, dtype=torch.bool)
    for query in range(passes):
        clip = norm == "linf" and query % 2 == 1
        if clip:
            cap = (size * (1 - eta)).unsqueeze(1)
            proposal = delta.clamp(-cap, cap)
        else:
            changed = delta != 0
            draw = torch.rand(delta.shape, generator=generator, dtype=delta.dtype, device=delta.device)
            block = (draw < fraction.unsqueeze(1)) & changed
            block[torch.arange(len(delta)), (draw * changed).argmax(1)] = True  # at least one changed element
            proposal = torch.where(block, delta * SHRINK[norm], delta)
        with torch.no_grad():
            adversarial = is_adversarial(model((original + proposal).view_as(inputs)), labels, targeted=targeted)
        proposed = distance(original, original + proposal)
        kept = adversarial & ((proposed < size) if norm != "linf" or clip else (proposed <= size))
        delta = torch.where(kept.unsqueeze(1), proposal, delta)
        size = torch.where(kept, proposed, size)
        moved |= kept
        if clip:
            eta = torch.where(kept, (eta * 1.5).clamp(max=0.5), (eta * 0.7).clamp(min=1e-3))
        else:
            fraction = torch.where(kept, (fraction * 1.5).clamp(max=0.9),
                                   (fraction * 0.7).clamp(min=1 / delta.shape[1]))
    # Where no proposal was kept, the point itself (x + (best − x) can differ from it by a rounding).
    return torch.where(batch_view(moved, best), (original + delta).view_as(inputs), best.detach())


def _run_stage(stage: Stage, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norm: str,
               steps: int, best: torch.Tensor, best_norm: torch.Tensor, targeted: bool,
               generator: torch.Generator | None) -> torch.Tensor:
    name = stage[0]
    if name == "prune":
        return prune(model, inputs, labels, best, passes=2 * steps, targeted=targeted)
    if name == "swap":
        return swap_search(model, inputs, labels, best, passes=2 * steps, targeted=targeted)
    if name == "line":
        return line_search(model, inputs, labels, best, passes=2 * steps, targeted=targeted)
    if name == "local":
        return local_search(model, inputs, labels, best, passes=2 * steps, norm=norm, targeted=targeted,
                            generator=generator)
    if name == "apgd":
        rounds = min(SEARCH_ROUNDS, steps)
        return minimal(model, inputs, labels, attack=apgd, norm=norm, upper=best_norm, steps=steps // rounds,
                       binary_search_steps=rounds, targeted=targeted, generator=generator)
    member = _RESTARTED.get(name, name)
    chosen: dict[str, Any] = {"distance": norm} if member == "alma" else {"norm": norm} if member != "ddn" else {}
    if name in _RESTARTED:
        chosen["starting_points"] = best
    if member == "fab_t" and not targeted:
        chosen["target_classes"] = FAB_TARGETS
    function = _FROM_SCRATCH[member][0]
    if len(stage) == 3:
        chosen.update(stage[2])
    return function(model, inputs, labels, steps=steps, targeted=targeted, generator=generator, **chosen)


class _Probe:
    """Per leaf module whose output has its input's shape, during one forward and backward: which samples' output
    gradient is non-zero while their input gradient is exactly zero (and the output is not all zero, as a ReLU
    layer's that no input activates): the module blocks the gradient there."""

    def __init__(self, model: nn.Module) -> None:
        self.blocked: dict[nn.Module, torch.Tensor] = {}
        self._calls: list[tuple[nn.Module, dict[str, torch.Tensor]]] = []  # a module may be called more than once
        self._handles = [module.register_forward_hook(self._watch) for module in model.modules()
                         if not any(True for _ in module.children())]

    def _watch(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        inputs = args[0] if args else None
        if not (isinstance(inputs, torch.Tensor) and isinstance(output, torch.Tensor)
                and inputs.shape == output.shape and inputs.requires_grad and output.requires_grad):
            return
        seen = {"live": (output.detach().flatten(1) != 0).any(1)}
        self._calls.append((module, seen))
        output.register_hook(lambda grad: seen.__setitem__("out", (grad.flatten(1) != 0).any(1)))
        inputs.register_hook(lambda grad: seen.__setitem__("in", (grad.flatten(1) == 0).all(1)))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        for module, seen in self._calls:
            if "out" in seen:
                rows = seen["out"] & seen.get("in", torch.ones_like(seen["out"])) & seen["live"]
                self.blocked[module] = self.blocked[module] | rows if module in self.blocked else rows


def _probe(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, targeted: bool,
           gradient: bool) -> tuple[torch.Tensor, torch.Tensor, list[nn.Module]]:
    """The logits at the inputs and, with ``gradient`` (one forward and one backward; without it, one forward and
    nothing found): which samples' logit margin has an exactly zero gradient there, and the modules that block
    the gradient of those samples."""
    if not gradient:
        with torch.no_grad():
            logits = model(inputs)
        check_logits(logits, labels)
        return logits, torch.zeros(len(inputs), dtype=torch.bool, device=inputs.device), []
    point = inputs.detach().requires_grad_(True)
    probe = _Probe(model)
    try:
        with torch.enable_grad():  # the probe's graph, even under a caller's no_grad
            logits = model(point)
            check_logits(logits, labels)
            (slope,) = torch.autograd.grad(logit_margin(logits, labels, targeted=targeted).sum(), point)
    finally:
        probe.close()
    blind = (slope.flatten(1) == 0).all(1)
    blockers = [module for module, rows in probe.blocked.items() if bool((rows & blind).any())]
    return logits.detach(), blind, blockers


def _usable(stages: Sequence[Stage], classes: int, targeted: bool) -> list[Stage]:
    # ALMA's DLR⁺ constraint needs 3 classes (tDLR⁺ 4); on fewer its steps go to the stages after it.
    return [stage for stage in stages
            if stage[0] != "alma" or classes >= (4 if targeted else 3)] or list(stages[-1:])


def portfolio(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    stages: Sequence[Stage],
    norm: str,
    budget: int,
    masked: Sequence[Stage] | None = None,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``auto`` with another plan of ``stages`` (the design benchmark compares them); same budget and result.
    ``masked``: the plan of the samples whose gradient at the input is exactly zero where no module can be
    bypassed (None: no probe, the first pass is a forward alone, and ``stages`` for every sample)."""
    check_attack_call(model, inputs, labels, targeted=targeted, generator=generator)
    check_choice("norm", norm, NORMS)
    check_positive("budget", budget, integer=True)
    check_stages(stages, norm)
    if masked is not None:
        check_stages(masked, norm)
    probe = masked is not None and budget >= 4  # the backward leaves a step only from 4 passes on
    logits, blind, blockers = _probe(model, inputs, labels, targeted=targeted, gradient=probe)
    open_ = ~is_adversarial(logits, labels, targeted=targeted)  # a clean error is at distance 0: nothing to do
    best = inputs.clone()
    best_norm = torch.full((inputs.shape[0],), math.inf, dtype=inputs.dtype, device=inputs.device)
    steps = (budget - 2) // 2 if probe else (budget - 1) // 2
    # Blind samples: the usual plan through the blocking modules' straight-through gradient where there are
    # such modules, else the decision-based plan.
    groups = ((open_ & ~blind, stages, ()), (open_ & blind, stages if blockers else masked or stages, blockers))
    for group, chosen_plan, bypassed in groups:
        plan = _usable(chosen_plan, logits.shape[1], targeted)
        with straight_through(bypassed):
            _run_plan(plan, model, inputs, labels, group=group, steps=steps, norm=norm, best=best,
                      best_norm=best_norm, targeted=targeted, generator=generator)
    return best


def _run_plan(plan: Sequence[Stage], model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *,
              group: torch.Tensor, steps: int, norm: str, best: torch.Tensor, best_norm: torch.Tensor,
              targeted: bool, generator: torch.Generator | None) -> None:
    """The stages of ``plan`` in turn on the samples of ``group``, updating ``best`` and ``best_norm`` in place
    where a stage found a smaller perturbation."""
    for stage, count in zip(plan, stage_steps(plan, steps), strict=True):
        chosen = group & torch.isfinite(best_norm) if stage[0] in _NEEDS_A_POINT else group
        if count == 0 or not bool(chosen.any()):
            continue
        index = chosen.nonzero().squeeze(1)
        found = _run_stage(stage, model, inputs[index], labels[index], norm=norm, steps=count, best=best[index],
                           best_norm=best_norm[index], targeted=targeted, generator=generator)
        changed = (found != inputs[index]).flatten(1).any(1)
        size = torch.where(changed, _NORM_OF[norm](inputs[index], found), math.inf)
        better = size < best_norm[index]
        best[index] = torch.where(batch_view(better, found), found, best[index])
        best_norm[index] = torch.where(better, size, best_norm[index])


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

    One forward and one backward at the inputs (Q >= 4), then the stages of ``PLANS[norm]`` share the
    (Q − 2) // 2 steps; where the gradient at the input is exactly zero, through the straight-through gradient
    of the modules that block it, or, where none can be bypassed, the stages of ``MASKED_PLANS[norm]``.
    Returned per sample: the best point of the stages, or the original input if none found an adversarial.

    Args:
        norm: "l0", "l1", "l2" or "linf". budget: Q, a positive int (1 or 2: the forward at the inputs only).
        targeted: ``labels`` are targets. generator: passed to the members.
    """
    return portfolio(model, inputs, labels, stages=PLANS.get(norm, ()), norm=norm, budget=budget,
                     masked=MASKED_PLANS.get(norm, ()), targeted=targeted, generator=generator)


def auto_steps(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    *,
    norm: str = "l2",
    steps: int = 500,
    targeted: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``auto`` in the registry's vocabulary: ``steps`` iterations of one forward and one backward each, so
    Q = 2 × ``steps`` passes per sample (``--steps`` of the command line; ``edgewise benchmark --budget Q`` runs
    it with Q / 2 steps)."""
    check_positive("steps", steps, integer=True)
    return auto(model, inputs, labels, norm=norm, budget=2 * steps, targeted=targeted, generator=generator)

