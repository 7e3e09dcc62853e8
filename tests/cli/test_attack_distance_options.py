"""`edgewise attack` measures the distance the attack minimized with the options it minimized it with."""

from __future__ import annotations

import json
from pathlib import Path

import lpips as lpips_package
import pytest
import torch
from torch import nn

from edgewise.attacks import alma
from edgewise.cli import main
from edgewise.data import load as load_data
from edgewise.distances.lpips import WEIGHT_FILES
from edgewise.models import load as load_model

MODEL = '''
from torch import nn
from edgewise.models import load


def build() -> nn.Module:
    return nn.Sequential(nn.Upsample(size=(28, 28), mode="bilinear", align_corners=False), load("tinycnn-fmnist"))
'''


def package_lpips(torch_home: Path) -> lpips_package.LPIPS:
    """The lpips package's network on a seeded random AlexNet, whose backbone is saved where torchvision caches
    its ImageNet weights (edgewise reads it from there)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = lpips_package.LPIPS(pretrained=True, pnet_rand=True, net="alex", lpips=True, verbose=False)
    layers = [layer for k in range(1, 6) for layer in getattr(network.net, f"slice{k}")]
    state = {f"features.{k}": v for k, v in nn.Sequential(*layers).state_dict().items()}
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, torch_home / "hub" / "checkpoints" / WEIGHT_FILES["alex"])
    return network


def test_uncalibrated_lpips_is_reported_as_minimized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    reference = package_lpips(tmp_path / "torch")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "net.py").write_text(MODEL)
    out = tmp_path / "out"
    options = {"distance_options": {"calibrated": False}}
    assert main(["attack", "--model", f"{tmp_path / 'net.py'}:build", "--resize", "32", "--attack", "alma",
                 "--distance", "lpips", "--attack-options", json.dumps(options), "--steps", "10", "--n", "3",
                 "--batch-size", "3", "--no-checks", "--no-progress", "--out", str(out)]) == 0
    reported = [json.loads(line)["distances"]["lpips"]
                for line in (out / "samples.jsonl").read_text().splitlines()]

    dataset = load_data("sample", resize=32)
    x = torch.stack([dataset[i][0] for i in range(3)])
    y = torch.tensor([dataset[i][1] for i in range(3)])
    adv = alma(load_model(f"{tmp_path / 'net.py'}:build"), x, y, distance="lpips", steps=10, **options)
    reference.lpips = False  # the package's uncalibrated distance (channel sum, no heads)
    expected = reference(x, adv, normalize=True).flatten().tolist()
    assert reported == pytest.approx(expected, rel=1e-3)
    assert 'distance lpips {"calibrated": false}' in capsys.readouterr().out


def test_a_distance_without_gradient_is_refused_before_anything_is_written(tmp_path: Path, one_error_line) -> None:
    # cw --distance l0 ran on its margin alone (ℓ0 has no gradient) and reported the ℓ0 it happened to reach.
    out = tmp_path / "out"
    assert main(["attack", "--model", "tinymlp-fmnist", "--attack", "cw", "--distance", "l0", "--steps", "2", "--n",
                 "2", "--no-progress", "--out", str(out)]) == 2
    error = one_error_line()
    assert "distance must have a gradient" in error and "got 'l0'" in error
    assert not out.exists()
