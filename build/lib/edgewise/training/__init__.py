"""Training: one DDP-ready loop and the recipes of the papers."""

from edgewise.training.loop import TrainConfig, accuracy, train, write_zoo_entry
from edgewise.training.recipes import RECIPES

__all__ = ["RECIPES", "TrainConfig", "accuracy", "train", "write_zoo_entry"]
