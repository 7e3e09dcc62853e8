"""Model wrappers: input normalization inside the model, channel repetition, and forward/backward counting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from edgewise.losses import logit_margin


class Normalize(nn.Module):
    """``(inputs - mean) / std`` per channel, so that models take inputs in [0, 1] (DESIGN.md)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (inputs - self.mean) / self.std


class RepeatChannels(nn.Module):
    """Repeat a 1-channel image to ``channels`` channels (a gray model seen as a color model)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.expand(-1, self.channels, -1, -1)


class _CountBackward(torch.autograd.Function):
    """Identity whose backward tells a CountingModel how many samples a gradient flowed through."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, counter: CountingModel) -> torch.Tensor:
        ctx.counter = counter
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.counter.backwards += grad.shape[0]
        return grad, None


class CountingModel(nn.Module):
    """Wrap a model and count the samples that go through its forward and backward passes.

    Forward samples are counted in :meth:`forward`; backward samples by an identity autograd node put in front
    of the model in each forward that requires gradients (one per graph, so a gradient through that forward is
    counted once), so nothing is registered on the wrapped model and nothing is left behind.
    ``forwards`` and ``backwards`` are plain integers (number of samples, not of calls).

    With ``labels`` (the batch's true classes, or targets with ``targeted``), every full-batch forward also
    records per sample the index (1-based) of the first forward whose input was in [0, 1] and adversarial:
    ``first_adversarial`` (0 = never; empty without ``labels``). A tensor operation, no host synchronization.
    It also keeps, per sample, whether any forward returned NaN/inf (``non_finite``) and the logit margin of
    the first forward and the lowest one seen (``first_margin``, ``lowest_margin``): the margin decreased iff
    ``lowest_margin < first_margin`` (the failure indicators of :mod:`edgewise.eval`).
    """

    def __init__(self, model: nn.Module, *, labels: torch.Tensor | None = None, targeted: bool = False) -> None:
        super().__init__()
        self.model = model
        self.labels = labels
        self.targeted = targeted
        self.forwards = 0
        self.backwards = 0
        self.calls = 0
        empty = torch.zeros(0, dtype=torch.long)
        self.first_adversarial = empty if labels is None else torch.zeros_like(labels)
        self.non_finite = torch.zeros(0 if labels is None else len(labels), dtype=torch.bool,
                                      device=None if labels is None else labels.device)
        self.first_margin = torch.full(self.non_finite.shape, float("nan"), device=self.non_finite.device)
        self.lowest_margin = torch.full(self.non_finite.shape, float("inf"), device=self.non_finite.device)

    def _record(self, inputs: torch.Tensor, logits: torch.Tensor) -> None:
        if self.labels is None or logits.shape[0] != self.labels.shape[0]:
            return
        predicted = logits.detach().argmax(1)
        adversarial = predicted == self.labels if self.targeted else predicted != self.labels
        inside = ((inputs >= 0) & (inputs <= 1)).flatten(1).all(1)
        new = adversarial & inside & (self.first_adversarial == 0)
        self.first_adversarial = torch.where(new, self.calls, self.first_adversarial)
        detached = logits.detach()
        self.non_finite = self.non_finite | ~torch.isfinite(detached).all(1)
        margin = logit_margin(detached, self.labels, targeted=self.targeted).float()
        self.first_margin = torch.where(self.first_margin.isnan(), margin, self.first_margin)
        self.lowest_margin = torch.fmin(self.lowest_margin, margin)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs.shape[0]
        self.forwards += batch
        self.calls += 1
        if inputs.requires_grad:
            inputs = _CountBackward.apply(inputs, self)
        logits: torch.Tensor = self.model(inputs)
        self._record(inputs.detach(), logits)
        return logits
