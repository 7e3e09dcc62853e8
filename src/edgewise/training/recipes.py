"""Training recipes: how a batch of training inputs is made from a clean batch.

A recipe is a function ``(model, inputs, labels, generator) -> (inputs, labels)`` called in train mode on every
batch; the loop minimizes the cross-entropy on what it returns. ``standard`` returns the clean batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Recipe = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def standard(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Empirical risk minimization on clean inputs."""
    return inputs, labels


RECIPES: dict[str, Recipe] = {"standard": standard}
