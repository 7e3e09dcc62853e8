"""Sanity checks before an evaluation: reasons why an attack's numbers would overestimate robustness.

In the spirit of AutoAttack's ``checks.py`` (Croce & Hein, 2020), written anew for edgewise's contract (DESIGN.md:
the model maps inputs in [0, 1] to logits). Inputs that cannot be evaluated at all raise ``ValueError`` /
``TypeError`` naming the argument: wrong shape or dtype, values outside [0, 1], NaN/inf, labels outside the
model's classes, inputs the model cannot take. Properties that make the numbers untrustworthy are a
:class:`SanityWarning` each, returned as :class:`Finding` records so that reports can keep them:

- ``probabilities``: the outputs look like probabilities (rows in [0, 1] summing to 1), not logits; softmax
  saturates, so gradients and margins computed from them are flat.
- ``train_mode``: the model is in train mode (dropout, batch statistics): call ``model.eval()``.
- ``non_deterministic``: two forwards of the same inputs differ (randomized model): an attack against one
  draw says little about the next; evaluate the expectation (EOT) instead.
- ``batch_dependent``: an input's output changes with the other inputs of its batch (BatchNorm with batch
  statistics, e.g. an exported program or ONNX file saved in train mode, whose modules report nothing): every
  attack and its verification see another model for each batch. Checked only for a deterministic model.
- ``masked_gradients``: the gradient of the logit margin w.r.t. the input is zero or non-finite for most
  inputs (non-differentiable operations such as quantization, saturated outputs): gradient-based attacks
  are blind there; try a gradient-free or adaptive attack (BPDA).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from edgewise.losses import logit_margin
from edgewise.validation import check_inputs, check_logits, check_positive, training_modules

SAMPLES = 64
"""At most this many inputs (the first ones) are used by the checks: they cost 4 forwards and 1 backward."""
MASKED_FRACTION = 0.5
"""``masked_gradients`` is reported when more than this fraction of the checked inputs have a masked gradient."""
PROBABILITY_TOLERANCE = 1e-3
DETERMINISM_TOLERANCE = 1e-5
BATCH_TOLERANCE = 1e-3
"""``batch_dependent``: relative to the largest |logit|; another batch size may take another kernel, whose float
rounding differs by far less, while batch statistics move logits by a good fraction of their scale."""


class SanityWarning(UserWarning):
    """The model has a property that makes an adversarial evaluation overestimate robustness."""


@dataclass(frozen=True)
class Finding:
    """One failed sanity check: ``check`` is its name (see the module docstring), ``message`` what was seen."""

    check: str
    message: str


def _forward(model: Any, inputs: torch.Tensor) -> torch.Tensor:
    """The model's output, with a clear ValueError when the inputs do not fit the model."""
    try:
        output: torch.Tensor = model(inputs)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"inputs of shape {tuple(inputs.shape)} do not fit the model: {first_line}") from error
    return output


@contextlib.contextmanager
def _buffers_kept(model: Any) -> Iterator[None]:
    """Put the model's buffers back after the checks: in train mode each forward would update BatchNorm's
    running statistics, and the model evaluated afterwards would no longer be the one given."""
    kept = [(buffer, buffer.detach().clone()) for buffer in model.buffers()] if isinstance(model, nn.Module) else []
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in kept:
                buffer.copy_(value)


def _train_mode(model: Any) -> Finding | None:
    training = training_modules(model)
    if not training:
        return None
    shown = ", ".join(training[:3]) + (", ..." if len(training) > 3 else "")
    return Finding("train_mode", f"the model is in train mode ({len(training)} module(s): {shown}); "
                                 "call model.eval() before evaluating it")


def _probabilities(logits: torch.Tensor) -> Finding | None:
    inside = bool(((logits >= 0) & (logits <= 1)).all())
    ones = torch.ones(len(logits), dtype=logits.dtype, device=logits.device)
    if not (inside and torch.allclose(logits.sum(1), ones, rtol=0, atol=PROBABILITY_TOLERANCE)):
        return None
    return Finding("probabilities", "the model's outputs are in [0, 1] and every row sums to 1: it returns "
                                    "probabilities, not logits; remove the final softmax")


def _non_deterministic(first: torch.Tensor, second: torch.Tensor) -> Finding | None:
    same = torch.isclose(first, second, rtol=DETERMINISM_TOLERANCE, atol=DETERMINISM_TOLERANCE, equal_nan=True)
    if bool(same.all()):
        return None
    differ = int((~same.all(1)).sum())
    return Finding("non_deterministic", f"two forwards of the same inputs differ for {differ} of {len(first)} "
                                        "inputs: the model is randomized (dropout in train mode, random "
                                        "transforms); attacks and their verification see different models")


def _batch_dependent(model: Any, inputs: torch.Tensor, whole: torch.Tensor) -> Finding | None:
    """The outputs of the batch's two halves run on their own, against ``whole``, the outputs of the full batch
    (halves of at least 2 inputs: BatchNorm in train mode refuses a batch of one)."""
    if len(inputs) < 4:
        return None
    half = len(inputs) // 2
    apart = torch.cat([_forward(model, inputs[:half]), _forward(model, inputs[half:])])
    scale = float(whole.abs().max())
    same = torch.isclose(apart, whole, rtol=BATCH_TOLERANCE, atol=BATCH_TOLERANCE * scale, equal_nan=True)
    if bool(same.all()):
        return None
    differ = int((~same.all(1)).sum())
    return Finding("batch_dependent", f"the outputs of {differ} of {len(inputs)} inputs change when their batch "
                                      "is split in two: the model uses batch statistics (BatchNorm saved or "
                                      "exported in train mode); export or save it after model.eval()")


def _masked_gradients(model: Any, inputs: torch.Tensor, labels: torch.Tensor) -> Finding | None:
    """Gradient of the logit margin (not the cross-entropy, whose gradient underflows on confident samples)."""
    inputs = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        margin = logit_margin(_forward(model, inputs), labels)
        if not margin.requires_grad:
            return Finding("masked_gradients", "the model's output does not depend differentiably on its input "
                                               "(no gradient at all): gradient-based attacks cannot work")
        (gradient,) = torch.autograd.grad(margin.sum(), inputs, allow_unused=True)
    if gradient is None:
        return Finding("masked_gradients", "the model's output does not depend on its input through autograd")
    flat = gradient.flatten(1)
    masked = (flat == 0).all(1) | ~torch.isfinite(flat).all(1)
    count = int(masked.sum())
    if count <= MASKED_FRACTION * len(masked):
        return None
    return Finding("masked_gradients", f"the input gradient of the logit margin is zero or NaN/inf for {count} "
                                       f"of {len(masked)} inputs (gradient masking, e.g. a non-differentiable "
                                       "quantization): gradient-based attacks are blind; try BPDA or a "
                                       "gradient-free attack (the 'auto' attack does both: "
                                       "edgewise.models.wrappers.straight_through through a module that "
                                       "blocks the gradient, a decision-based search otherwise)")


def check_evaluation(model: Any, inputs: Any, labels: Any, *, samples: int = SAMPLES,
                     indices: torch.Tensor | None = None) -> list[Finding]:
    """Check that ``model``, ``inputs`` and ``labels`` can be evaluated and that the numbers will mean something.

    Uses the first ``samples`` inputs. Raises ``ValueError``/``TypeError`` for inputs or labels that cannot be
    evaluated; issues one :class:`SanityWarning` per failed check and returns the findings (empty: all passed).
    The model's mode, parameters, buffers and gradients are left untouched (gradients are taken w.r.t. the inputs only).
    ``indices``: the inputs' dataset indices, named in an error about some of them instead of their rows.
    """
    if not isinstance(model, nn.Module) and not callable(model):
        raise TypeError(f"model must be a torch.nn.Module or a callable, got {type(model).__name__}")
    check_inputs(inputs, labels)
    check_positive("samples", samples, integer=True)
    x, y = inputs[:samples], labels[:samples]
    found = [_train_mode(model)]
    with _buffers_kept(model):
        with torch.no_grad():
            first = _forward(model, x)
            check_logits(first, y, indices=None if indices is None else indices[:samples])
            second = _forward(model, x)
            randomized = _non_deterministic(first, second)
            found += [_probabilities(first), randomized,
                      None if randomized is not None else _batch_dependent(model, x, first)]
        found.append(_masked_gradients(model, x, y))
    findings = [finding for finding in found if finding is not None]
    for finding in findings:
        warnings.warn(f"{finding.check}: {finding.message}", SanityWarning, stacklevel=2)
    return findings
