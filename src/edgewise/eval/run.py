"""Run an attack over a dataset in batches, count its model passes, and re-verify everything it returns."""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from edgewise.attacks.base import check_levels, quantize
from edgewise.distances import get as get_distance
from edgewise.eval.result import DISTANCES, AttackResult
from edgewise.eval.sanity import check_evaluation
from edgewise.losses import is_adversarial
from edgewise.models.wrappers import CountingModel
from edgewise.validation import check_inputs, check_logits, check_positive

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _accepts(attack: Attack, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(attack).parameters
    except (TypeError, ValueError):
        return False


def _name(attack: Attack) -> str:
    function = attack.func if isinstance(attack, functools.partial) else attack
    return str(getattr(function, "__name__", type(function).__name__))


def targeted_keywords(attack: Attack, targeted: bool) -> dict[str, bool]:
    """The keyword that tells ``attack`` whether it is targeted: ``{"targeted": targeted}`` for an attack that
    takes it, nothing for one already bound (``functools.partial``) to the same value.

    An attack bound to the other value, or one without a ``targeted`` keyword asked to run targeted, would
    silently compute something else (an untargeted attack pushes away from the targets): a ``ValueError``.
    """
    bound = attack.keywords if isinstance(attack, functools.partial) else {}
    if "targeted" in bound:
        if bound["targeted"] is not targeted:
            raise ValueError(f"attack is bound to targeted={bound['targeted']!r}, run_attack has "
                             f"targeted={targeted!r}: bind the same value or leave it to run_attack")
        return {}
    if _accepts(attack, "targeted"):
        return {"targeted": targeted}
    if targeted:
        raise ValueError(f"attack {_name(attack)} takes no targeted keyword, run_attack has targeted=True: it "
                         "cannot be told to reach the targets")
    return {}


@torch.no_grad()
def verify(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, adversarial: Any, *,
           targeted: bool = False, levels: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-verify what an attack returned: returns ``(checked inputs, prediction, is_adversarial)``.

    A returned example counts only if it is a tensor of the inputs' shape, finite, inside [0, 1], and (after
    quantization to ``levels`` when given) the recomputed prediction is adversarial. A sample that fails any
    check falls back to its original input and counts as not adversarial.
    """
    if not isinstance(adversarial, torch.Tensor) or adversarial.shape != inputs.shape:
        got = tuple(adversarial.shape) if isinstance(adversarial, torch.Tensor) else type(adversarial).__name__
        raise ValueError(f"attack must return a tensor of shape {tuple(inputs.shape)}, got {got}")
    candidate = quantize(adversarial.detach().to(inputs.dtype), levels)
    flat = candidate.flatten(1)
    valid = torch.isfinite(flat).all(1) & (flat >= 0).all(1) & (flat <= 1).all(1)
    candidate = torch.where(valid.view(-1, *[1] * (inputs.dim() - 1)), candidate, inputs)
    prediction = model(candidate).argmax(1)
    adversarial_now = (prediction == labels) if targeted else (prediction != labels)
    return candidate, prediction, adversarial_now & valid


def _attack_batch(model: nn.Module, attack: Attack, inputs: torch.Tensor, labels: torch.Tensor, *,
                  targeted: bool, levels: int | None, generator: torch.Generator | None,
                  distance_names: Sequence[str]) -> AttackResult:
    with torch.no_grad():
        logits = model(inputs)
    check_logits(logits, labels)
    clean_prediction = logits.argmax(1)
    already = is_adversarial(logits, labels, targeted=targeted)
    counting = CountingModel(model, labels=labels, targeted=targeted)
    started = time.perf_counter()
    kwargs: dict[str, Any] = {"generator": generator} if generator is not None else {}
    returned = attack(counting, inputs, labels, **kwargs, **targeted_keywords(attack, targeted))
    seconds = time.perf_counter() - started
    candidate, prediction, found = verify(model, inputs, labels, returned, targeted=targeted, levels=levels)
    # Samples adversarial without attack count at distance 0 (ALMA paper, sec. 5) and keep their input;
    # samples without a verified adversarial keep their input too.
    success = already | found
    adversarial = torch.where((found & ~already).view(-1, *[1] * (inputs.dim() - 1)), candidate, inputs)
    prediction = torch.where(found & ~already, prediction, clean_prediction)
    with torch.no_grad():
        measured = {name: get_distance(name)(inputs)(adversarial) for name in distance_names}
    distances = {name: torch.where(success, value, torch.full_like(value, float("inf")))
                 for name, value in measured.items()}
    changed = returned.detach().ne(inputs).flatten(1).any(1)
    returned_finite = torch.isfinite(returned.detach()).flatten(1).all(1)
    decreased = counting.lowest_margin < counting.first_margin
    batch = inputs.shape[0]
    return AttackResult(
        adversarial=adversarial.cpu(), labels=labels.cpu(), clean_prediction=clean_prediction.cpu(),
        adversarial_prediction=prediction.cpu(), clean_correct=(~already).cpu(), success=success.cpu(),
        verified=(found | already | ~changed).cpu(),
        distances={k: v.cpu() for k, v in distances.items()},
        forwards=torch.full((batch,), counting.forwards / batch, dtype=torch.float64),
        backwards=torch.full((batch,), counting.backwards / batch, dtype=torch.float64),
        first_adversarial=counting.first_adversarial.cpu(),
        seconds=torch.full((batch,), seconds / batch, dtype=torch.float64),
        non_finite=(counting.non_finite | ~returned_finite).cpu(), stalled=(~already & ~decreased).cpu(),
    )


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run_attack(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, attack: Attack, *,
               batch_size: int = 256, targeted: bool = False, levels: int | None = None,
               distances: Sequence[str] = DISTANCES, seed: int = 0, indices: torch.Tensor | None = None,
               resume_dir: str | Path | None = None, progress: bool = True, checks: bool = True) -> AttackResult:
    """Attack ``inputs`` batch by batch and return re-verified per-sample results.

    The model is wrapped in a :class:`CountingModel` per batch (nothing is registered on ``model``). An attack
    that takes ``generator`` gets one seeded with ``seed`` and the batch's first index, so results do not depend
    on which batches ran before. With ``resume_dir`` every finished batch is written there atomically (write
    then rename) and skipped when the same call runs again. ``indices`` are the samples' dataset indices
    (default 0..N-1), kept in the result. With ``checks`` the sanity checks of :mod:`edgewise.eval.sanity`
    run first (a :class:`~edgewise.eval.sanity.SanityWarning` per finding).

    Sample i's result does not depend on the other batches. It can depend on its batch's members (floating-point
    reductions over a batch; an attack's random draws of shape (B, ...)), so a sharded run keeps whole batches
    together (:mod:`edgewise.eval.distributed`).
    """
    check_inputs(inputs, labels)
    check_positive("batch_size", batch_size, integer=True)
    check_levels(levels)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not callable(attack):
        raise TypeError(f"attack must be callable, got {type(attack).__name__}")
    if not isinstance(targeted, bool):
        raise TypeError(f"targeted must be a bool, got {type(targeted).__name__}")
    targeted_keywords(attack, targeted)
    indices = torch.arange(len(inputs)) if indices is None else indices
    if not isinstance(indices, torch.Tensor) or indices.shape != labels.shape:
        shape = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise ValueError(f"indices must be a tensor of shape {tuple(labels.shape)}, got {shape}")
    if checks:
        check_evaluation(model, inputs, labels)
    folder = Path(resume_dir) if resume_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    uses_generator = _accepts(attack, "generator")
    parts: list[AttackResult] = []
    starts = range(0, len(inputs), batch_size)
    for start in tqdm(starts, desc="attack", unit="batch", disable=not progress, leave=False):
        path = folder / f"batch-{int(indices[start]):08d}-{batch_size}.pt" if folder is not None else None
        if path is not None and path.is_file():
            parts.append(AttackResult(**torch.load(path, weights_only=True)))
            continue
        stop = start + batch_size
        generator = None
        if uses_generator:
            generator = torch.Generator(inputs.device).manual_seed(seed * 1_000_003 + int(indices[start]))
        part = _attack_batch(model, attack, inputs[start:stop], labels[start:stop], targeted=targeted,
                             levels=levels, generator=generator, distance_names=distances)
        part.indices = indices[start:stop].cpu()
        if path is not None:
            _save_atomic(vars(part), path)
        parts.append(part)
    return AttackResult.concatenate(parts)
