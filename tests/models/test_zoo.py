import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from edgewise.data import sample
from edgewise.models import ARCHITECTURES, CountingModel, Normalize, build_model, list_models, load_model
from edgewise.models import zoo as zoo_module


def test_list_models_has_metadata() -> None:
    zoo = list_models()
    assert "smallcnn-fmnist" in zoo
    for meta in zoo.values():
        assert {"dataset", "input_shape", "clean_test_accuracy", "recipe", "command", "sha256"} <= set(meta)


def test_smallcnn_fmnist_is_accurate_on_the_sample() -> None:
    model = load_model("smallcnn-fmnist")
    assert not model.training
    inputs, labels = sample()
    with torch.no_grad():
        accuracy = (model(inputs).argmax(1) == labels).float().mean()
    assert accuracy > 0.9
    assert list_models()["smallcnn-fmnist"]["clean_test_accuracy"] >= 0.90


def test_smallcnn_is_the_cw_architecture() -> None:
    layers = [m for m in build_model("smallcnn")[1] if isinstance(m, nn.Conv2d | nn.Linear)]
    shapes = [(m.in_channels, m.out_channels) if isinstance(m, nn.Conv2d) else (m.in_features, m.out_features)
              for m in layers]
    assert shapes == [(1, 32), (32, 32), (32, 64), (64, 64), (1024, 200), (200, 200), (200, 10)]


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("channels", [1, 3])
def test_architectures_map_images_to_logits(name: str, channels: int) -> None:
    model = build_model(name, in_channels=channels).eval()
    assert model(torch.rand(2, channels, 28, 28)).shape == (2, 10)


def test_unknown_model_and_architecture() -> None:
    with pytest.raises(ValueError, match="model must be one of"):
        load_model("resnet-imagenet")
    with pytest.raises(ValueError, match="architecture must be one of"):
        build_model("vgg")


def test_corrupt_weights_are_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for suffix in (".pt", ".json"):
        shutil.copy(Path(str(zoo_module.WEIGHTS / f"smallcnn-fmnist{suffix}")), tmp_path / f"m{suffix}")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(zoo_module, "WEIGHTS", tmp_path)
    with pytest.raises(ValueError, match="corrupt: sha256"):
        load_model("m")


def test_normalize() -> None:
    layer = Normalize([0.5, 0.25], [0.5, 2.0])
    x = torch.rand(3, 2, 4, 4)
    expected = torch.stack([(x[:, 0] - 0.5) / 0.5, (x[:, 1] - 0.25) / 2.0], 1)
    torch.testing.assert_close(layer(x), expected)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize([0.0], [0.0])


def test_counting_model_counts_samples_and_leaves_no_hooks() -> None:
    model = build_model("lenet").eval()
    counting = CountingModel(model, labels=torch.tensor([0, 1, 2]))
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    for _ in range(4):
        logits = counting(x)
        torch.autograd.grad(logits.sum(), x)
    with torch.no_grad():
        counting(x[:2])
    assert counting.forwards == 4 * 3 + 2 and counting.backwards == 4 * 3
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_counting_model_records_first_adversarial_forward() -> None:
    linear = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0], [1.0]]))  # class 1 iff x > 0
    counting = CountingModel(nn.Sequential(nn.Flatten(), linear), labels=torch.tensor([0, 0, 0]))
    counting(torch.tensor([[-1.0], [-1.0], [-1.0]]))
    counting(torch.tensor([[0.5], [-1.0], [2.0]]))  # sample 2 is outside [0, 1]: does not count
    counting(torch.tensor([[0.5], [0.7], [0.5]]))
    assert counting.first_adversarial.tolist() == [2, 3, 3]
