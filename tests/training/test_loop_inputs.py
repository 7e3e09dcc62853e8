"""What the training loop accepts: a finished run run again ends as it did; hyper-parameters and data that would
train silently wrong (or fail deep in torch) are refused at entry in one line naming the argument."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from edgewise.cli import main
from edgewise.training import TrainConfig, train


def synthetic(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 28, 28, generator=generator), torch.randint(0, 10, (count,), generator=generator)


def test_a_finished_run_run_again_reports_the_same_robust_accuracy(tmp_path: Path) -> None:
    # Before: a run interrupted after its last checkpoint (during the final PGD-20 evaluation), or a finished run
    # given the same command again, resumed no epoch and left the freshly built model in train mode: the final
    # robust accuracy then refused to run ("model must be in eval mode"), or with dropout measured a noisy model.
    config = TrainConfig(architecture="lenetv2", recipe="pgd", epochs=1, batch_size=16, seed=1,
                         recipe_options={"eps": 0.1, "steps": 1})
    train_set, test_set = synthetic(0, 32), synthetic(1, 16)
    first = train(config, train_set, test_set, out=tmp_path, name="m", progress=False)
    record = json.loads((tmp_path / "m.json").read_text())
    again = train(config, train_set, test_set, out=tmp_path, name="m", progress=False)
    assert not again.training and not any(module.training for module in again.modules())
    for (name, expected), actual in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(expected, actual), name
    assert json.loads((tmp_path / "m.json").read_text())["final_robust_accuracy"] == record["final_robust_accuracy"]


@pytest.mark.parametrize(("options", "name"), [
    ({"lr": math.nan}, "lr"), ({"lr": -0.1}, "lr"), ({"lr": math.inf}, "lr"),
    ({"momentum": math.nan}, "momentum"), ({"weight_decay": math.nan}, "weight_decay"),
    ({"lr_gamma": -1.0, "lr_milestones": [1]}, "lr_gamma"), ({"lr_gamma": 0.0, "lr_milestones": [1]}, "lr_gamma"),
    ({"epochs": 1.5}, "epochs"), ({"batch_size": True}, "batch_size"), ({"seed": 0.5}, "seed"),
])
def test_hyper_parameters_that_would_train_silently_wrong_are_refused(options: dict[str, Any], name: str) -> None:
    # Before: lr NaN trained NaN weights (train_loss NaN, test accuracy that of an all-NaN model) and a negative
    # lr_gamma turned the decayed steps into gradient ascent, both without a word; a float epochs failed in range().
    config = TrainConfig(**{**vars(TrainConfig(epochs=2)), **options})
    with pytest.raises((ValueError, TypeError), match=rf"^{name} must be "):
        config.validate()


@pytest.mark.parametrize(("data", "message"), [
    ("uint8", r"train_set: inputs must have a floating-point dtype, got torch\.uint8"),
    ("scale255", r"train_set: inputs must be in \[0, 1\]"),
    ("label10", r"train_set: labels must be < 10 \(the classes of the architectures\), got max 10"),
    ("float_labels", r"train_set: labels must have dtype torch\.int64"),
    ("rgb", r"train_set: inputs must have shape \(N, 1, 28, 28\), got \(32, 3, 28, 28\)"),
    ("short_labels", r"train_set: labels must have shape \(32,\)"),
    ("test_scale255", r"test_set: inputs must be in \[0, 1\]"),
])
def test_training_data_off_the_contract_is_refused(tmp_path: Path, data: str, message: str) -> None:
    # Before: uint8 images or images on the 0-255 scale trained without a word (the zoo's normalization expects
    # [0, 1]); labels >= 10, float labels, colour images or a label count differing from the images failed deep in
    # torch (IndexError, RuntimeError, AssertionError) on the first batch.
    images, labels = synthetic(0, 32)
    test = synthetic(1, 16)
    variants: dict[str, tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
        "uint8": (((images * 255).to(torch.uint8), labels), test),
        "scale255": ((images * 255, labels), test),
        "label10": ((images, labels.clone().fill_(10)), test),
        "float_labels": ((images, labels.float()), test),
        "rgb": ((images.expand(-1, 3, -1, -1), labels), test),
        "short_labels": ((images, labels[:16]), test),
        "test_scale255": ((images, labels), (test[0] * 255, test[1])),
    }
    train_set, test_set = variants[data]
    config = TrainConfig(architecture="mlp", epochs=1, batch_size=16)
    with pytest.raises((ValueError, TypeError), match=message):
        train(config, train_set, test_set, out=tmp_path, name="m", progress=False)
    assert not tmp_path.joinpath("checkpoint.pt").exists()


def test_train_cli_refuses_a_nan_lr_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["train", "--architecture", "mlp", "--epochs", "1", "--lr", "nan", "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--lr must be " in err and "got nan" in err
    assert not any(tmp_path.iterdir())
