"""What the training loop reports: per-epoch metrics of the model it trained (here with lr = 0, so the model is
the initial one and its accuracy is known), on the subset ``train_samples`` asks for; the zoo record it writes
has the fields of the zoo's own records; the end-of-training robust accuracy uses PGD with a random start."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from edgewise.attacks.pgd import pgd
from edgewise.models.zoo import WEIGHTS
from edgewise.training import RECIPES, TrainConfig, train
from edgewise.training.loop import accuracy, robust_accuracy
from edgewise.training.recipes import TrainingBatch


def test_metrics_are_the_models_on_the_chosen_samples(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    images, test_images = torch.rand(64, 1, 28, 28, generator=generator), torch.rand(16, 1, 28, 28, generator=generator)
    config = TrainConfig(architecture="tinymlp", epochs=2, batch_size=16, lr=0.0, seed=3, train_samples=32)
    zeros = torch.zeros(64, dtype=torch.long)
    untrained = train(config, (images, zeros), (test_images, zeros[:16]), out=tmp_path / "probe", name="m",
                      progress=False)
    with torch.no_grad():
        labels, test_labels = untrained(images).argmax(1), untrained(test_images).argmax(1)
    test_labels[:4] = (test_labels[:4] + 1) % 10  # 12 of 16 right
    train(config, (images, labels), (test_images, test_labels), out=tmp_path / "run", name="m", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert [m["train_accuracy"] for m in metrics] == [1.0, 1.0]  # labels are the (unchanging) model's predictions
    assert [m["test_accuracy"] for m in metrics] == [0.75, 0.75]
    record = json.loads((tmp_path / "run" / "m.json").read_text())
    zoo = [json.loads(path.read_text()) for path in sorted(WEIGHTS.glob("*.json"))]
    common = set.intersection(*(set(entry) for entry in zoo))
    assert common <= set(record), sorted(common - set(record))
    assert record["input_shape"] == [1, 28, 28] and record["clean_test_accuracy"] == 0.75


class _DeadAtInputs(nn.Module):
    """Two classes, z = (0, 10 relu(x₀ − 0.6) − 0.1): the gradient is exactly 0 at x₀ = 0.5, so PGD from x cannot
    move; a random start in the ℓ∞ ball of radius 0.3 lands beyond x₀ = 0.6 for about a third of the samples."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 1)
        with torch.no_grad():
            self.first.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0]]))
            self.first.bias.fill_(-0.6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = 10 * torch.relu(self.first(x.flatten(1)))[:, 0] - 0.1
        return torch.stack([torch.zeros_like(hidden), hidden], 1)


def test_robust_accuracy_is_that_of_pgd_with_a_random_start() -> None:
    model, inputs, labels = _DeadAtInputs().eval(), torch.full((32, 6), 0.5), torch.zeros(32, dtype=torch.long)
    found = robust_accuracy(model, inputs, labels, [("linf", 0.3)], seed=4, steps=5)
    adversarials = pgd(model, inputs, labels, norm="linf", eps=0.3, steps=5, random_init=True,
                       generator=torch.Generator().manual_seed(4))
    (value,) = found.values()
    assert value == accuracy(model, adversarials, labels) and value < 1


def test_a_three_channel_model_is_attacked_in_three_channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # in_channels=3 (the rgb zoo model) on grey images: the batches are repeated over 3 channels, so the recipe's
    # adversary perturbs each channel (the model's normalization would broadcast a grey batch, and the adversary
    # would then perturb the grey image only).
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(16, 1, 28, 28, generator=generator), torch.randint(0, 10, (16,), generator=generator)
    shapes: list[tuple[int, ...]] = []
    pgd_recipe = RECIPES["pgd"]

    @functools.wraps(pgd_recipe)
    def recording(model: nn.Module, inputs: torch.Tensor, *args: Any, **kwargs: Any) -> TrainingBatch:
        shapes.append(tuple(inputs.shape))
        return pgd_recipe(model, inputs, *args, **kwargs)

    monkeypatch.setitem(RECIPES, "pgd", recording)
    config = TrainConfig(architecture="tinymlp", recipe="pgd", in_channels=3, epochs=1, batch_size=8, seed=0,
                         recipe_options={"eps": 0.1, "steps": 1})
    train(config, (images, labels), (images[:4], labels[:4]), out=tmp_path, name="m", progress=False)
    assert shapes == [(8, 3, 28, 28)] * 2
    assert json.loads((tmp_path / "m.json").read_text())["input_shape"] == [3, 28, 28]


def test_a_batch_of_one_is_allowed() -> None:
    TrainConfig(batch_size=1).validate()  # "epochs and batch_size must be >= 1"
