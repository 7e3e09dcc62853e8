"""Constraint and loss functions on logits, per sample.

Convention: ``labels`` are the true classes (untargeted) or the target classes (``targeted=True``).
"""

from __future__ import annotations

import torch


def _others(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.scatter(1, labels.unsqueeze(1), float("-inf"))


def other_max(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """max over j != labels of logits[:, j], per sample (the true maximum over the other classes)."""
    return _others(logits, labels).amax(1)


def other_argmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,): per sample, the class j != labels of the largest logit (the first of equal ones)."""
    return _others(logits, labels).argmax(1)


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


def _sorted_logits(logits: torch.Tensor, *, minimum: int, name: str) -> torch.Tensor:
    classes = logits.shape[1]
    if classes < minimum:
        raise ValueError(f"{name} needs a model with at least {minimum} classes, got {classes}")
    return logits.sort(dim=1, descending=True).values


def dlr_plus(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DLR⁺ (ALMA eq. 4): (z_y − max_{i≠y} z_i) / (z_π1 − z_π3); negative iff misclassified. Needs 3 classes."""
    ordered = _sorted_logits(logits, minimum=3, name="DLR+")
    return logit_margin(logits, labels) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def targeted_dlr_plus(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """tDLR⁺ (ALMA eq. 18): (max_{i≠t} z_i − z_t) / (z_π1 − (z_π3 + z_π4)/2); negative iff classified as t.

    Needs 4 classes.
    """
    ordered = _sorted_logits(logits, minimum=4, name="tDLR+")
    scale = ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2
    return logit_margin(logits, targets, targeted=True) / (scale + 1e-12)
