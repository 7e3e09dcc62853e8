"""Checks of user input at the public entry points: a clear ValueError/TypeError naming the argument."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

import torch


def check_inputs(inputs: Any, labels: Any) -> None:
    """``inputs``: float tensor (B, ...) of finite values in [0, 1], B >= 1; ``labels``: int tensor (B,) >= 0."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must have a floating-point dtype, got {inputs.dtype}")
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must have shape (B, ...) with B >= 1, got {tuple(inputs.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    if labels.shape != inputs.shape[:1]:
        raise ValueError(f"labels must have shape ({inputs.shape[0]},) to match inputs, got {tuple(labels.shape)}")
    if labels.device != inputs.device:
        raise ValueError(f"labels must be on the device of inputs ({inputs.device}), got {labels.device}")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs must be finite, got NaN or inf values")
    low, high = float(inputs.min()), float(inputs.max())
    if low < 0 or high > 1:
        raise ValueError(f"inputs must be in [0, 1], got min {low:.4g} max {high:.4g}")
    if int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, got min {int(labels.min())}")


def check_logits(logits: Any, labels: torch.Tensor) -> int:
    """The model's output must be (B, C) logits with C > max(labels); returns C."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model must return logits of shape ({labels.shape[0]}, classes), got {shape}")
    classes = logits.shape[1]
    if int(labels.max()) >= classes:
        raise ValueError(f"labels must be in [0, {classes - 1}] for a model with {classes} classes, "
                         f"got max {int(labels.max())}")
    return int(classes)


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    """``value`` must be a (positive) number; ``integer`` for counts like ``steps``."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}")
    number = float(cast(float, value))
    if number != number:
        raise ValueError(f"{name} must be a number, got nan")
    if number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def check_fraction(name: str, value: Any) -> None:
    """``value`` must be a number in the open interval (0, 1)."""
    check_positive(name, value)
    if not float(value) < 1:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def check_choice(name: str, value: Any, choices: Collection[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")


def check_generator(generator: Any, device: torch.device) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != device.type:
        raise ValueError(f"generator must be on device type {device.type!r}, got {generator.device.type!r}")
