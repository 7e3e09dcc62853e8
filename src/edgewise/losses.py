"""Constraint and loss functions on logits, per sample.

Convention: ``labels`` are the true classes (untargeted) or the target classes (``targeted=True``).
"""

from __future__ import annotations

import torch


def other_max(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """max over j != labels of logits[:, j], per sample (the true maximum over the other classes)."""
    masked = logits.scatter(1, labels.unsqueeze(1), float("-inf"))
    return masked.amax(1)


def logit_margin(logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False) -> torch.Tensor:
    """Carlini & Wagner's logit difference; negative iff the input is adversarial (ALMA eq. 2 with Z logits).

    Untargeted: ``z_y - max_{j != y} z_j``; targeted: ``max_{j != t} z_j - z_t``.
    """
    own = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    rest = other_max(logits, labels)
    return rest - own if targeted else own - rest


def is_adversarial(logits: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False) -> torch.Tensor:
    """Boolean (B,): predicted class differs from ``labels`` (untargeted) or equals it (targeted)."""
    predicted = logits.argmax(1)
    return predicted == labels if targeted else predicted != labels
