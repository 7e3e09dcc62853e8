"""Architectures, the model zoo and model wrappers."""

from edgewise.models.architectures import ARCHITECTURES
from edgewise.models.loader import identity, load
from edgewise.models.wrappers import CountingModel, Normalize, RepeatChannels
from edgewise.models.zoo import build_model, list_models, load_model, model_from_metadata

__all__ = [
    "ARCHITECTURES",
    "CountingModel",
    "Normalize",
    "RepeatChannels",
    "build_model",
    "identity",
    "list_models",
    "load",
    "load_model",
    "model_from_metadata",
]
