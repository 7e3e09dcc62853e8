"""Model wrappers: input normalization inside the model, channel repetition, and forward/backward counting."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """``(inputs - mean) / std`` per channel, so that models take inputs in [0, 1] (DESIGN.md)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean and std must have the same length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
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


class CountingModel(nn.Module):
    """Wrap a model and count the samples that go through its forward and backward passes.

    Forward samples are counted in :meth:`forward`; backward samples by a hook on the *input tensor* of each
    forward that requires gradients, so nothing is registered on the wrapped model and nothing is left behind.
    ``forwards`` and ``backwards`` are plain integers (number of samples, not of calls).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def reset(self) -> None:
        self.forwards = 0
        self.backwards = 0

    def _count_backward(self, batch: int) -> None:
        self.backwards += batch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs.shape[0]
        self.forwards += batch
        if inputs.requires_grad:
            inputs.register_hook(lambda grad: self._count_backward(batch))
        return self.model(inputs)
