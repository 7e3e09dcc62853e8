"""The loop computes adversaries with the model in eval mode and takes the training step in train mode.

The recipes' contract (training/recipes.py): the adversary sees the deterministic network (as in the DDN
authors' training code), the outer minimization trains it. Every forward of the run is recorded with the mode of
every submodule and whether it came from inside the recipe.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import torch

from edgewise.training import RECIPES, TrainConfig, train
from edgewise.training.recipes import TrainingBatch


def test_adversaries_in_eval_mode_training_step_in_train_mode(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    train_set = (torch.rand(32, 1, 28, 28, generator=generator), torch.randint(0, 10, (32,), generator=generator))
    test_set = (train_set[0][:8], train_set[1][:8])
    forwards: list[tuple[bool, set[bool]]] = []
    inside = {"recipe": False}
    pgd_recipe = RECIPES["pgd"]

    @functools.wraps(pgd_recipe)
    def recording(model: torch.nn.Module, *args: Any, **kwargs: Any) -> TrainingBatch:
        if not getattr(model, "_recorded", False):
            model.register_forward_pre_hook(
                lambda module, _: forwards.append((inside["recipe"], {m.training for m in module.modules()})))
            model._recorded = True
        inside["recipe"] = True
        try:
            return pgd_recipe(model, *args, **kwargs)
        finally:
            inside["recipe"] = False

    monkeypatch.setitem(RECIPES, "pgd", recording)
    config = TrainConfig(architecture="mlp", recipe="pgd", epochs=1, batch_size=16, lr=0.05, seed=1,
                         recipe_options={"eps": 0.1, "steps": 2})
    train(config, train_set, test_set, out=tmp_path, name="m", progress=False)
    in_recipe = [modes for from_recipe, modes in forwards if from_recipe]
    outside = [modes for from_recipe, modes in forwards if not from_recipe]
    assert len(in_recipe) == 2 * 2 and all(modes == {False} for modes in in_recipe)   # 2 batches × 2 PGD steps
    # per batch, one training forward in train mode; after training, evaluation forwards in eval mode
    assert [modes for modes in outside if True in modes] == [{True}] * 2
    assert all(modes == {False} for modes in outside if True not in modes) and len(outside) > 2
