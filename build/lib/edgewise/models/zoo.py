"""The model zoo: names -> architecture + weights shipped inside the package, with the recipe that made them.

Each entry ``NAME`` has ``weights/NAME.pt`` (a ``state_dict``) and ``weights/NAME.json`` (metadata: dataset,
input shape, architecture, normalization, clean test accuracy, the command that trained it, sha256 of the weights).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgewise.models.architectures import ARCHITECTURES
from edgewise.models.wrappers import Normalize
from edgewise.validation import check_device

WEIGHTS = resources.files("edgewise.models") / "weights"


def list_models() -> dict[str, dict[str, Any]]:
    """Names of the zoo's models mapped to their metadata (dataset, input shape, accuracy, recipe, sha256)."""
    entries = sorted(p.name for p in WEIGHTS.iterdir() if p.name.endswith(".json"))
    return {name.removesuffix(".json"): json.loads((WEIGHTS / name).read_text()) for name in entries}


def build_model(architecture: str, *, in_channels: int = 1, num_classes: int = 10,
                mean: float = 0.0, std: float = 1.0) -> nn.Sequential:
    """An untrained zoo architecture with normalization inside, taking inputs in [0, 1]."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, got {architecture!r}")
    return nn.Sequential(
        Normalize([mean] * in_channels, [std] * in_channels),
        ARCHITECTURES[architecture](in_channels, num_classes),
    )


def model_from_metadata(meta: dict[str, Any]) -> nn.Sequential:
    """Build the (untrained) network that a zoo metadata record describes."""
    return build_model(
        meta["architecture"], in_channels=meta.get("in_channels", 1), num_classes=meta.get("num_classes", 10),
        mean=meta.get("mean", 0.0), std=meta.get("std", 1.0),
    )


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (weights, archives and data files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(name: str, *, device: str | torch.device = "cpu") -> nn.Module:
    """The zoo model ``name`` in eval mode on ``device``, its weights checked against the recorded sha256."""
    chosen = check_device(device)
    zoo = list_models()
    if name not in zoo:
        raise ValueError(f"model must be one of {sorted(zoo)}, got {name!r}")
    meta = zoo[name]
    model = model_from_metadata(meta)
    with resources.as_file(WEIGHTS / f"{name}.pt") as path:
        if not path.is_file():
            raise ValueError(f"weights of model {name!r} are missing: {path}")
        digest = sha256_file(path)
        if digest != meta["sha256"]:
            raise ValueError(f"weights file {path} is corrupt: sha256 {digest}, expected {meta['sha256']}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(chosen).eval()
