"""Checks of user input at the public entry points: a clear ValueError/TypeError naming the argument."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, cast

import torch
from torch import nn


def check_inputs(inputs: Any, labels: Any) -> None:
    """``inputs``: float tensor (B, ...) of finite values in [0, 1], B >= 1; ``labels``: int64 tensor (B,) >= 0."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must have a floating-point dtype, got {inputs.dtype}")
    if inputs.dim() < 2 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must have shape (B, ...) with B >= 1, got {tuple(inputs.shape)}")
    if labels.dtype != torch.int64:
        # torch's cross-entropy and gather take int64 class indices only (int32 or uint8 labels failed deep inside).
        raise TypeError(f"labels must have dtype torch.int64 (class indices; convert with labels.long()), got "
                        f"{labels.dtype}")
    if labels.shape != inputs.shape[:1]:
        raise ValueError(f"labels must have shape ({inputs.shape[0]},) to match inputs, got {tuple(labels.shape)}")
    if labels.device != inputs.device:
        raise ValueError(f"labels must be on the device of inputs ({inputs.device}), got {labels.device}")
    if not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs must be finite, got NaN or inf values")
    low, high = float(inputs.detach().min()), float(inputs.detach().max())  # no warning for inputs needing grad
    if low < 0 or high > 1:
        raise ValueError(f"inputs must be in [0, 1], got min {low:.4g} max {high:.4g}")
    if int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, got min {int(labels.min())}")


def check_logits(logits: Any, labels: torch.Tensor, *, indices: torch.Tensor | None = None) -> int:
    """The model's output must be finite (B, C) logits with C >= 2 and C > max(labels); returns C.

    A NaN/inf row has no prediction (its argmax is an arbitrary class, 0 for an all-NaN row) and no usable
    gradient: counted, it would be "misclassified at distance 0". ``indices``: the rows' dataset indices, named
    in that error instead of the batch rows."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"model must return logits of shape ({labels.shape[0]}, classes), got {shape}")
    classes = logits.shape[1]
    if classes < 2:  # nothing can be misclassified
        raise ValueError(f"model must return logits for at least 2 classes, got {classes}")
    if int(labels.max()) >= classes:
        raise ValueError(f"labels must be in [0, {classes - 1}] for a model with {classes} classes, "
                         f"got max {int(labels.max())}")
    bad = torch.nonzero(~torch.isfinite(logits.detach()).all(1)).flatten().cpu()
    if len(bad):
        named = ("dataset indices", indices.cpu()[bad]) if indices is not None else ("batch rows", bad)
        shown = ", ".join(map(str, named[1][:5].tolist())) + (", ..." if len(bad) > 5 else "")
        raise ValueError(f"model must return finite logits, got NaN or inf for {len(bad)} of {len(logits)} "
                         f"inputs ({named[0]} {shown})")
    return int(classes)


def training_modules(model: Any) -> list[str]:
    """The names of ``model``'s modules in train mode (the model itself by its class name); [] for a callable that
    is not an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        return []
    return [name or type(model).__name__ for name, module in model.named_modules() if module.training]


def check_eval_mode(model: Any, *, name: str = "model") -> None:
    """A module must be in eval mode, every submodule included: in train mode an attack would attack dropout
    draws and batch statistics, return distances that do not verify in eval mode, and update BatchNorm's running
    statistics; attacks never change the mode (DESIGN.md), so they refuse. A plain callable passes."""
    training = training_modules(model)
    if training:
        shown = ", ".join(training[:3]) + (", ..." if len(training) > 3 else "")
        raise ValueError(f"{name} must be in eval mode (call {name}.eval()): in train mode dropout and batch "
                         f"statistics change its answers and BatchNorm's running statistics would be updated; "
                         f"got {len(training)} module(s) in train mode: {shown}")


def check_model(model: Any, inputs: torch.Tensor, *, name: str = "model") -> None:
    """``model``: an ``nn.Module`` or a callable. A module must be in eval mode (:func:`check_eval_mode`), and
    ``inputs`` must have the dtype and device of its floating-point parameters where those are one (a model
    that casts or moves its inputs itself has parameters of one kind anyway; under autocast any dtype goes)."""
    if not isinstance(model, nn.Module):
        if not callable(model):
            raise TypeError(f"{name} must be a torch.nn.Module or a callable, got {type(model).__name__}")
        return
    check_eval_mode(model, name=name)
    parameters = [p for p in model.parameters() if p.is_floating_point()]
    devices = {p.device for p in parameters}
    if len(devices) == 1 and inputs.device not in devices:
        raise ValueError(f"inputs must be on the device of the {name}'s parameters ({next(iter(devices))}), got "
                         f"{inputs.device}")
    dtypes = {p.dtype for p in parameters}
    if len(dtypes) == 1 and inputs.dtype not in dtypes and not torch.is_autocast_enabled(inputs.device.type):
        raise ValueError(f"inputs must have the dtype of the {name}'s parameters ({next(iter(dtypes))}), got "
                         f"{inputs.dtype}")


def check_bool(name: str, value: Any) -> None:
    """``value`` must be a bool: a string such as ``"no"`` or an int would be taken as true."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_positive(name: str, value: Any, *, integer: bool = False, allow_zero: bool = False) -> None:
    """``value`` must be a (positive) number; ``integer`` for counts like ``steps``."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}")
    number = float(cast(float, value))
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value}")
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


def describe(value: Any) -> str:
    """A short description of a received value for error messages: a tensor's shape and dtype, else its type."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def check_batch(name: str, value: Any) -> None:
    """``value`` must be a floating-point tensor of shape (B, ...), at least 2 dimensions."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(value)}")
    if value.dim() < 2:
        raise ValueError(f"{name} must have shape (B, ...) with at least 2 dimensions, got {tuple(value.shape)}")


def check_like(name: str, value: Any, reference: torch.Tensor, reference_name: str) -> None:
    """``value`` must be a floating-point tensor of the shape of ``reference``."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(value)}")
    if value.shape != reference.shape:
        raise ValueError(f"{name} must have the shape of {reference_name} {tuple(reference.shape)}, "
                         f"got {tuple(value.shape)}")


def check_starting_points(value: Any, inputs: torch.Tensor) -> None:
    """``value``: points to start an attack from, a tensor of the inputs' shape, dtype and device in [0, 1]."""
    check_like("starting_points", value, inputs, "inputs")
    if value.dtype != inputs.dtype or value.device != inputs.device:
        raise ValueError(f"starting_points must have the dtype and device of inputs ({inputs.dtype}, "
                         f"{inputs.device}), got {value.dtype}, {value.device}")
    if not bool(torch.isfinite(value).all()) or float(value.min()) < 0 or float(value.max()) > 1:
        raise ValueError("starting_points must be finite and in [0, 1]")


def check_device(device: Any) -> torch.device:
    """``device``: a torch.device or its name (``"cpu"``, ``"cuda:1"``) that this machine has."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asks for CUDA, which this machine does not have")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} asks for MPS, which this machine does not have")
    if chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be a cpu, cuda or mps device, got {device!r}")
    return chosen
