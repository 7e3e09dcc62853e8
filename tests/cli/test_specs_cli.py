"""Bad model and data specs on the command line: each is one line on stderr and exit status 2, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from edgewise.cli import main

NET_PY = """
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).relu().mean((2, 3)))
"""


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the bad specs point at."""
    root = tmp_path_factory.mktemp("specs")
    (root / "net.py").write_text(NET_PY)
    (root / "broken.py").write_text("def build(:\n")
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, root / "partial.pt")
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, root / "state.pt")
    (root / "truncated.pt").write_bytes((root / "state.pt").read_bytes()[:100])
    (root / "empty").mkdir()
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    np.savez(root / "normalized.npz", x=(x - 0.5) / 0.25, y=np.arange(4))
    np.savez(root / "good.npz", x=x, y=np.arange(4))
    (root / "truncated.npz").write_bytes((root / "good.npz").read_bytes()[:-500])
    (root / "cifar").mkdir()
    (root / "cifar" / "test_batch").write_bytes(b"\x80\x04not a pickle")
    return root


CASES = [
    (["--model", "no-such-model"], "neither a zoo model"),
    (["--model", "{tmp}/net.py"], "must name the function or class"),
    (["--model", "{tmp}/net.py:Nope"], "has no function or class 'Nope'"),
    (["--model", "{tmp}/broken.py:build"], "failed to import: SyntaxError"),
    (["--model", "{tmp}/net.py:Net", "--model-args", '{{"bogus": 1}}'], "do not fit"),
    (["--model", "{tmp}/net.py:Net", "--model-args", "width=3"], "--model-args must be a JSON object"),
    (["--model", "{tmp}/net.py:Net", "--weights", "{tmp}/truncated.pt"], "not a readable torch.save checkpoint"),
    (["--model", "{tmp}/net.py:Net", "--weights", "{tmp}/partial.pt"], "do not fit the model: missing keys"),
    (["--model", "{tmp}/state.pt"], "it is a checkpoint"),
    (["--model", "torchvision:no_such_net"], "is not a torchvision model"),
    (["--model", "smallcnn-fmnist", "--weights", "{tmp}/state.pt"], "does not apply to zoo model"),
    (["--data", "{tmp}/missing"], "neither sample nor fmnist-test"),
    (["--data", "{tmp}/empty"], "is empty"),
    (["--data", "{tmp}/normalized.npz"], "--mean/--std"),
    (["--data", "{tmp}/truncated.npz"], "truncated"),
    (["--data", "{tmp}/cifar"], "not a readable CIFAR"),
    (["--data", "sample", "--split", "train"], "--split applies to CIFAR and IDX folders"),
    (["--model", "torchvision:resnet18", "--num-classes", "10"], r"cannot take --data 'sample'"),
    (["--model", "{tmp}/net.py:Net", "--num-classes", "5"], "outputs 5 classes, --data 'sample' has 10"),
    (["--model", "{tmp}/net.py:Net", "--mean", "0.5,0.5", "--std", "0.2,0.2"], "--mean/--std have 2 values"),
]


@pytest.mark.parametrize(("argv", "message"), CASES)
def test_bad_spec_is_one_line_and_exit_2(tmp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         argv: list[str], message: str) -> None:
    filled = [part.format(tmp=tmp) for part in argv]
    status = main(["attack", *filled, "--attack", "ddn", "--steps", "1", "--n", "2", "--no-progress",
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("edgewise")
    assert re.search(message, err), err
