"""Run an attack over a dataset in batches, count its model passes, and re-verify everything it returns."""

from __future__ import annotations

import ctypes
import functools
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from edgewise.attacks.base import check_levels, quantize
from edgewise.distances import DistanceFn
from edgewise.distances import get as get_distance
from edgewise.eval.provenance import (
    check_record,
    describe_attack,
    describe_value,
    differing,
    edgewise_identity,
    fingerprint_model,
    fingerprint_tensor,
)
from edgewise.eval.result import DISTANCES, AttackResult
from edgewise.eval.sanity import SAMPLES, check_evaluation
from edgewise.losses import is_adversarial
from edgewise.models.wrappers import CountingModel
from edgewise.validation import check_eval_mode, check_inputs, check_logits, check_positive, describe

Attack = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

RESUME_FORMAT = 2
"""Layout of the batch files of ``resume_dir`` (1: results only, without a record; recomputed when found)."""


class Dataset(Protocol):
    """What ``run_attack`` needs of a map-style dataset: ``len(ds)`` and ``ds[i] -> (image tensor, int label)``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


def _accepts(attack: Attack, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(attack).parameters
    except (TypeError, ValueError):
        return False


def _name(attack: Attack) -> str:
    """The attack's own name (a partial named after what it runs, as a baseline adapter), else its function's."""
    function = attack.func if isinstance(attack, functools.partial) else attack
    return str(getattr(attack, "__name__", None) or getattr(function, "__name__", type(function).__name__))


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

    ``labels``: what the attack was given (the targets when ``targeted``). A returned example counts only if it
    is a tensor of the inputs' shape, finite, inside [0, 1], and (after quantization to ``levels`` when given)
    the model's logits there are finite and its prediction is adversarial. A sample that fails any check falls
    back to its original input and counts as not adversarial.
    """
    if not isinstance(adversarial, torch.Tensor) or adversarial.shape != inputs.shape:
        got = tuple(adversarial.shape) if isinstance(adversarial, torch.Tensor) else type(adversarial).__name__
        raise ValueError(f"attack must return a tensor of shape {tuple(inputs.shape)}, got {got}")
    candidate = quantize(adversarial.detach().to(inputs.dtype), levels)
    flat = candidate.flatten(1)
    shape = (-1, *[1] * (inputs.dim() - 1))
    inside = torch.isfinite(flat).all(1) & (flat >= 0).all(1) & (flat <= 1).all(1)
    candidate = torch.where(inside.view(shape), candidate, inputs)
    logits = model(candidate)
    # A NaN row's argmax is an arbitrary class (0 when all NaN): no prediction there, so nothing verified.
    valid = inside & torch.isfinite(logits).all(1)
    prediction = logits.argmax(1)
    adversarial_now = (prediction == labels) if targeted else (prediction != labels)
    return torch.where(valid.view(shape), candidate, inputs), prediction, adversarial_now & valid


def _check_batch_targets(targets: torch.Tensor, labels: torch.Tensor, classes: int,
                         indices: torch.Tensor) -> None:
    """A batch's targets: classes of the model, each other than its sample's label (reached without attack)."""
    if int(targets.max()) >= classes:
        raise ValueError(f"targets must be in [0, {classes - 1}] for a model with {classes} classes, got max "
                         f"{int(targets.max())}")
    same = torch.nonzero(targets == labels).flatten().cpu()
    if len(same):
        raise ValueError(f"targets must differ from the labels, got the label as target at dataset indices "
                         f"{indices[same][:5].tolist()}")


def _attack_batch(model: nn.Module, attack: Attack, inputs: torch.Tensor, labels: torch.Tensor,
                  targets: torch.Tensor | None, *, levels: int | None, generator: torch.Generator | None,
                  measures: Mapping[str, Callable[[torch.Tensor], DistanceFn]], keywords: dict[str, Any],
                  indices: torch.Tensor) -> AttackResult:
    """One batch: ``labels`` are the true labels (clean accuracy), ``targets`` (None: untargeted) the classes the
    attack is told to reach; ``measures`` the distances recorded, by name (:func:`distance_factories`)."""
    with torch.no_grad():
        logits = model(inputs)
    classes = check_logits(logits, labels, indices=indices)
    targeted = targets is not None
    if targets is not None:
        _check_batch_targets(targets, labels, classes, indices)
    goal = labels if targets is None else targets
    clean_prediction = logits.argmax(1)
    already = is_adversarial(logits, goal, targeted=targeted)
    counting = CountingModel(model, labels=goal, targeted=targeted, inputs=inputs)
    started = time.perf_counter()
    if generator is not None:
        keywords = {**keywords, "generator": generator}
    returned = attack(counting, inputs, goal, **keywords)
    seconds = time.perf_counter() - started
    candidate, prediction, found = verify(model, inputs, goal, returned, targeted=targeted, levels=levels)
    # Samples adversarial without attack count at distance 0 (ALMA paper, sec. 5) and keep their input;
    # samples without a verified adversarial keep their input too.
    success = already | found
    adversarial = torch.where((found & ~already).view(-1, *[1] * (inputs.dim() - 1)), candidate, inputs)
    prediction = torch.where(found & ~already, prediction, clean_prediction)
    with torch.no_grad():
        measured = {name: factory(inputs)(adversarial) for name, factory in measures.items()}
    distances = {name: torch.where(success, value, torch.full_like(value, float("inf")))
                 for name, value in measured.items()}
    changed = returned.detach().ne(inputs).flatten(1).any(1)
    returned_finite = torch.isfinite(returned.detach()).flatten(1).all(1)
    decreased = counting.lowest_margin < counting.first_margin
    batch = inputs.shape[0]
    return AttackResult(
        adversarial=adversarial.cpu(), labels=labels.cpu(), clean_prediction=clean_prediction.cpu(),
        adversarial_prediction=prediction.cpu(), clean_correct=(clean_prediction == labels).cpu(),
        success=success.cpu(), verified=(found | already | ~changed).cpu(),
        distances={k: v.cpu() for k, v in distances.items()},
        forwards=torch.full((batch,), counting.forwards / batch, dtype=torch.float64),
        backwards=torch.full((batch,), counting.backwards / batch, dtype=torch.float64),
        first_adversarial=counting.first_adversarial.cpu(),
        seconds=torch.full((batch,), seconds / batch, dtype=torch.float64),
        non_finite=(counting.non_finite | ~returned_finite).cpu(), stalled=(~already & ~decreased).cpu(),
        indices=indices, targets=(torch.full_like(labels, -1) if targets is None else targets).cpu(),
    )


def distance_factories(distances: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None
                       ) -> dict[str, Callable[[torch.Tensor], DistanceFn]]:
    """The registry factory of each of ``distances``, with its ``options`` (``{name: {keyword: value}}``, e.g. the
    ``distance_options`` an attack minimized with) bound; options of a distance not measured are an error."""
    chosen = {} if options is None else options
    if not isinstance(chosen, Mapping) or not all(isinstance(value, Mapping) for value in chosen.values()):
        raise TypeError(f"distance_options must map distance names to dicts of options, got {chosen!r}")
    unknown = sorted(set(chosen) - set(distances))
    if unknown:
        raise ValueError(f"distance_options must name distances that are measured ({list(distances)}), got "
                         f"{unknown}")
    return {name: get_distance(name, **chosen.get(name, {})) for name in distances}


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _device(model: nn.Module) -> torch.device:
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None with another C library)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system after a batch.

    A batch frees tensors of many sizes (images, activations, gradients) while a few small per-sample results
    stay; with glibc's adaptive mmap threshold the freed space stays in the process, and a streamed evaluation
    of 20,000 3×64×64 images grew from 1.1 to 2.6 GB peak RSS, about 40 MB a batch
    (benchmarks/streaming_memory.py). ``malloc_trim`` returns those pages: the resident size stays flat.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _item(dataset: torch.Tensor | Dataset, index: int) -> tuple[torch.Tensor, int]:
    item = dataset[index]
    if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], torch.Tensor)):
        raise TypeError(f"inputs[{index}] must be a pair (image tensor, int label), got {type(item).__name__}")
    return item[0], int(item[1])


def _load(dataset: torch.Tensor | Dataset, indices: torch.Tensor,
          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's samples ``indices``, copied one by one into one batch on ``device`` (no list of images is
    held besides the batch)."""
    order = indices.tolist()
    first, label = _item(dataset, order[0])
    inputs = torch.empty((len(order), *first.shape), dtype=first.dtype, device=device)
    labels = torch.empty(len(order), dtype=torch.long)
    for position, index in enumerate(order):
        image, label = (first, label) if position == 0 else _item(dataset, index)
        if image.shape != first.shape:
            raise ValueError(f"inputs' images must all have one shape, got {tuple(first.shape)} at index "
                             f"{order[0]} and {tuple(image.shape)} at index {index}")
        inputs[position] = image
        labels[position] = label
    targets = labels.to(device)
    check_inputs(inputs, targets)
    return inputs, targets


def _indices(inputs: torch.Tensor | Dataset, labels: torch.Tensor | None, indices: Any) -> torch.Tensor:
    """The samples' dataset indices: given, or 0..N-1; for a dataset, each within it."""
    if labels is not None:
        check_inputs(inputs, labels)
        chosen = torch.arange(len(labels)) if indices is None else indices
        if not isinstance(chosen, torch.Tensor) or chosen.shape != labels.shape:
            shape = tuple(chosen.shape) if isinstance(chosen, torch.Tensor) else type(chosen).__name__
            raise ValueError(f"indices must be a tensor of shape {tuple(labels.shape)}, got {shape}")
        return chosen.cpu()
    if isinstance(inputs, torch.Tensor) or not (hasattr(inputs, "__getitem__") and hasattr(inputs, "__len__")):
        raise TypeError(f"inputs must be a tensor with labels, or a map-style dataset with labels=None, got "
                        f"{type(inputs).__name__} and labels=None")
    count = len(inputs)
    chosen = torch.arange(count) if indices is None else torch.as_tensor(indices)
    if chosen.dim() != 1 or chosen.numel() == 0 or chosen.is_floating_point() or chosen.dtype == torch.bool:
        raise ValueError(f"indices must be a non-empty 1-D integer tensor of dataset indices, got dtype "
                         f"{chosen.dtype} shape {tuple(chosen.shape)}")
    if int(chosen.min()) < 0 or int(chosen.max()) >= count:
        raise ValueError(f"indices must be in [0, {count - 1}] (the dataset has {count} samples), got min "
                         f"{int(chosen.min())} max {int(chosen.max())}")
    return chosen.long().cpu()


def _wanted(part: AttackResult, keep: bool | int, held: int) -> torch.Tensor:
    """The samples of ``part`` whose adversarial image ``keep`` asks for, ``held`` images being already kept."""
    if isinstance(keep, bool):
        return torch.full_like(part.kept, keep)
    broken = part.success & part.clean_correct
    return broken & (broken.long().cumsum(0) <= keep - held)


def _resumed(path: Path, record: dict[str, Any], members: dict[str, Any], label: str) -> AttackResult | None:
    """The batch stored at ``path`` when it was produced by this run (``record``) for these ``members``; None
    when absent, written before records existed, or of other members (a batch of another size of run).

    A record of another run is a ``ValueError`` naming the first differing field.
    """
    if not path.is_file():
        return None
    stored = torch.load(path, weights_only=True)
    if "record" not in stored:
        return None
    found = differing(stored["record"], record)
    if found is not None:
        raise ValueError(f"{label} holds {path.name}, written by a run with {found}: use another folder or delete "
                         "it")
    return AttackResult(**stored["result"]) if stored["batch"] == members else None


def _targets(targets: Any, targeted: bool, count: int) -> torch.Tensor | None:
    """``targets``: with ``targeted``, one integer class >= 0 per evaluated sample (CPU copy); otherwise None."""
    if not targeted:
        if targets is not None:
            raise ValueError("targets are given but targeted=False: pass targeted=True to attack toward them")
        return None
    if targets is None:
        raise ValueError("targeted=True needs targets, one class per sample to reach (labels are the true labels, "
                         "against which clean accuracy is measured)")
    if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor, got {describe(targets)}")
    if targets.shape != (count,):
        raise ValueError(f"targets must have shape ({count},), one per evaluated sample, got {tuple(targets.shape)}")
    if int(targets.min()) < 0:
        raise ValueError(f"targets must be >= 0, got min {int(targets.min())}")
    return targets.long().cpu()


def run_attack(model: nn.Module, inputs: torch.Tensor | Dataset, labels: torch.Tensor | None, attack: Attack, *,
               batch_size: int = 256, targeted: bool = False, targets: torch.Tensor | None = None,
               levels: int | None = None, distances: Sequence[str] = DISTANCES,
               distance_options: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0,
               indices: torch.Tensor | None = None,
               resume_dir: str | Path | None = None, progress: bool = True, checks: bool = True,
               keep_adversarial: bool | int | None = None) -> AttackResult:
    """Attack the samples batch by batch and return re-verified per-sample results.

    ``inputs``/``labels``: a tensor of images in [0, 1] with their true labels, whose dataset indices are
    ``indices`` (default 0..N-1); or a map-style dataset (``ds[i] -> (image, int label)``) with ``labels=None``,
    of which ``indices`` picks the samples (default all). A dataset is loaded one batch at a time onto the
    model's device, so memory does not grow with the number of samples.

    ``targeted=True`` needs ``targets``: an integer tensor of one class per evaluated sample, in the samples'
    order (each other than its label). The attack gets the targets in place of the labels and succeeds where
    the prediction is the target; clean accuracy and ``clean_correct`` are measured against the true labels, and
    a sample already predicted as its target counts as adversarial at distance 0. The result records both.

    ``distances``: the registry distances recorded per sample; ``distance_options`` (``{name: {keyword: value}}``)
    the options of their factories, so that a distance an attack minimized with options (ALMA's
    ``distance_options``, e.g. uncalibrated LPIPS) is measured as the same distance.

    ``keep_adversarial``: which adversarial images the result holds (``AttackResult.kept``): True every one,
    False none, an int k the first k samples the attack broke (clean-correct and successful, in order); default
    every one for tensor inputs, none for a dataset. ``targeted`` reaches the attack by construction
    (:func:`targeted_keywords`).

    The model is wrapped in a :class:`CountingModel` per batch (nothing is registered on ``model``). An attack
    that takes ``generator`` gets one seeded with ``seed`` and the batch's first index, so results do not depend
    on which batches ran before. With ``resume_dir`` every finished batch is written there atomically (write
    then rename) with what produced it: this run's record (model fingerprint, attack description with all its
    options, targeted, levels, seed, batch size, distances and their options, edgewise version; also in
    ``run.json``) and the digests of the batch's indices, labels, inputs and (targeted) targets. A later call
    reuses a batch whose record and members are its own, recomputes a batch whose members changed (a larger run:
    only what is missing is computed) or that lacks images it keeps, and refuses a folder of another run with a
    ``ValueError`` naming the field. With ``checks`` the sanity checks of :mod:`edgewise.eval.sanity` run first on
    the first samples (a :class:`~edgewise.eval.sanity.SanityWarning` per finding). Clean inputs on which the model
    returns NaN/inf logits are a ``ValueError`` naming their dataset indices (a NaN row has no prediction).

    Sample i's result does not depend on the other batches. It can depend on its batch's members (floating-point
    reductions over a batch; an attack's random draws of shape (B, ...)), so a sharded run keeps whole batches
    together (:mod:`edgewise.eval.distributed`).
    """
    chosen = _indices(inputs, labels, indices)
    check_eval_mode(model)  # before any forward: in train mode one would update BatchNorm's running statistics
    check_positive("batch_size", batch_size, integer=True)
    check_levels(levels)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not callable(attack):
        raise TypeError(f"attack must be callable, got {type(attack).__name__}")
    if not isinstance(targeted, bool):
        raise TypeError(f"targeted must be a bool, got {type(targeted).__name__}")
    keep = (labels is not None) if keep_adversarial is None else keep_adversarial
    if not isinstance(keep, bool) and not (isinstance(keep, int) and keep >= 0):
        raise ValueError(f"keep_adversarial must be a bool, an int >= 0 or None, got {keep_adversarial!r}")
    bound = targeted_keywords(attack, targeted)
    goals = _targets(targets, targeted, len(chosen))
    measures = distance_factories(distances, distance_options)
    device = inputs.device if isinstance(inputs, torch.Tensor) else _device(model)

    def batch(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(inputs, torch.Tensor) and labels is not None:
            return inputs[start:stop], labels[start:stop]
        return _load(inputs, chosen[start:stop], device)

    if checks:
        check_evaluation(model, *batch(0, SAMPLES), indices=chosen[:SAMPLES])
    folder = Path(resume_dir) if resume_dir is not None else None
    record: dict[str, Any] = {}
    label = f"resume_dir {folder}"
    if folder is not None:
        record = {"format": RESUME_FORMAT, "edgewise": edgewise_identity(), "model": fingerprint_model(model),
                  "attack": describe_attack(attack), "targeted": targeted, "levels": levels, "seed": seed,
                  "batch_size": batch_size, "distances": list(distances),
                  "distance_options": describe_value(dict(distance_options or {}))}
        check_record(folder / "run.json", record, label=label)
    uses_generator = _accepts(attack, "generator")
    parts: list[AttackResult] = []
    held = 0
    for start in tqdm(range(0, len(chosen), batch_size), desc="attack", unit="batch", disable=not progress,
                      leave=False):
        first = int(chosen[start])
        x, y = batch(start, start + batch_size)
        t = None if goals is None else goals[start:start + batch_size].to(y.device)
        members = path = part = None
        if folder is not None:
            members = {"indices": fingerprint_tensor(chosen[start:start + batch_size]),
                       "labels": fingerprint_tensor(y.long()), "inputs": fingerprint_tensor(x)}
            if t is not None:
                members["targets"] = fingerprint_tensor(t)
            path = folder / f"batch-{first:08d}-{batch_size}.pt"
            part = _resumed(path, record, members, label)
            if part is not None and bool((_wanted(part, keep, held) & ~part.kept).any()):
                part = None  # stored without images this call keeps
        if part is None:
            generator = None
            if uses_generator:
                generator = torch.Generator(x.device).manual_seed(seed * 1_000_003 + first)
            part = _attack_batch(model, attack, x, y, t, levels=levels, generator=generator,
                                 measures=measures, keywords=bound,
                                 indices=chosen[start:start + batch_size].clone())
            part = part.retain(_wanted(part, keep, held))
            if path is not None:
                _save_atomic({"record": record, "batch": members, "result": vars(part)}, path)
        else:
            part = part.retain(_wanted(part, keep, held))
        held += int(part.kept.sum())
        parts.append(part)
        del x, y, t
        _release_freed_memory()
    return AttackResult.concatenate(parts)
