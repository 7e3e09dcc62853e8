"""Model specs: .py + weights (checkpoint layouts, DataParallel prefixes, strict loading), TorchScript, .pt2,
torchvision, timm, normalization, identity, and a table of bad specs each raising one clear error."""

from __future__ import annotations

import copy
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgewise import models
from edgewise.models.loader import ExportedModule, load_weights

MODEL_PY = """
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, width=4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).relu().mean((2, 3)))


def not_a_model():
    return 3
"""


@pytest.fixture
def net(tmp_path: Path) -> tuple[Path, nn.Module]:
    """(net.py, the module net.py:Net() builds, with its random weights saved as net.pt)."""
    (tmp_path / "net.py").write_text(MODEL_PY)
    namespace: dict = {}
    exec(MODEL_PY, namespace)
    torch.manual_seed(0)
    reference = namespace["Net"]().eval()
    torch.save(reference.state_dict(), tmp_path / "net.pt")
    return tmp_path / "net.py", reference


def outputs(model: nn.Module, seed: int = 1) -> torch.Tensor:
    inputs = torch.rand(3, 1, 9, 9, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        result: torch.Tensor = model(inputs)
    return result


@pytest.mark.parametrize("layout", ["state_dict", "model", "model_state_dict", "net", "plain", "module-prefix",
                                    "module._orig_mod.", "_orig_mod.module.", "numpy-scalars"])
def test_weights_in_the_usual_checkpoint_layouts(tmp_path: Path, net, layout: str) -> None:
    path, reference = net
    state = reference.state_dict()
    if layout == "plain":
        saved: object = state
    elif layout == "module-prefix":  # DataParallel / DistributedDataParallel
        saved = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}
    elif layout == "numpy-scalars":  # a training script's bookkeeping: numpy scalars and arrays, no code
        saved = {"state_dict": state, "best_acc": np.float64(0.9), "epoch": np.int64(3), "history": np.zeros(3)}
    elif layout.endswith("."):  # DDP(torch.compile(model)) and torch.compile(DDP(model)): both prefixes, either order
        saved = {f"{layout}{k}": v for k, v in state.items()}
    else:
        saved = {layout: state, "optimizer": {"lr": 0.1}, "epoch": 7}
    torch.save(saved, tmp_path / "ckpt.pt")
    model = models.load(f"{path}:Net", weights=tmp_path / "ckpt.pt")
    assert not model.training
    assert torch.equal(outputs(model), outputs(reference))


def test_without_weights_the_file_builds_random_ones(net) -> None:
    path, reference = net
    assert not torch.equal(outputs(models.load(f"{path}:Net")), outputs(reference))


def test_model_args_and_num_classes_reach_the_constructor(net) -> None:
    path, _ = net
    model = models.load(f"{path}:Net", model_args={"width": 6}, num_classes=4)
    assert outputs(model).shape == (3, 4) and model.conv.out_channels == 6
    assert models.load(f"{path}:Net", model_args='{"width": 5}').conv.out_channels == 5


def test_mean_std_wrap_the_model_in_normalize(net) -> None:
    path, reference = net
    model = models.load(f"{path}:Net", weights=path.with_suffix(".pt"), mean=0.3, std=0.2)
    inputs = torch.rand(2, 1, 9, 9)
    with torch.no_grad():
        assert torch.allclose(model(inputs), reference((inputs - 0.3) / 0.2))
    assert isinstance(model[0], models.Normalize)
    rgb = models.load("torchvision:shufflenet_v2_x0_5", num_classes=3, mean=[0.4914, 0.4822, 0.4465],
                      std=[0.2470, 0.2435, 0.2616])
    assert rgb[0].mean.flatten().tolist() == pytest.approx([0.4914, 0.4822, 0.4465])


def test_torchscript_and_export_programs(tmp_path: Path, net) -> None:
    _, reference = net
    torch.jit.save(torch.jit.trace(reference, torch.rand(2, 1, 9, 9)), tmp_path / "net.ts")
    batch = ({0: torch.export.Dim("batch", min=1)},)
    program = torch.export.export(reference, (torch.rand(2, 1, 9, 9),), dynamic_shapes=batch)
    torch.export.save(program, tmp_path / "net.pt2")
    scripted, exported = models.load(str(tmp_path / "net.ts")), models.load(str(tmp_path / "net.pt2"))
    assert torch.equal(outputs(scripted), outputs(reference))
    assert torch.equal(outputs(exported), outputs(reference))
    assert isinstance(exported, ExportedModule)
    assert not any(module.training for module in exported.modules())  # the sanity checks see eval mode
    with pytest.raises(ValueError, match="cannot be put in train mode"):
        exported.train()
    # weights can be loaded into a saved program too (same keys): the reference's, into a program of other weights
    state = {key: value.clone() for key, value in reference.state_dict().items()}
    torch.save(state, tmp_path / "w.pt")
    with torch.no_grad():
        reference.head.bias.add_(1)
    torch.jit.save(torch.jit.trace(reference, torch.rand(2, 1, 9, 9)), tmp_path / "other.ts")
    torch.export.save(torch.export.export(reference, (torch.rand(2, 1, 9, 9),), dynamic_shapes=batch),
                      tmp_path / "other.pt2")
    reference.load_state_dict(state)
    for other in ("other.ts", "other.pt2"):
        assert not torch.equal(outputs(models.load(str(tmp_path / other))), outputs(reference))
        assert torch.equal(outputs(models.load(str(tmp_path / other), weights=tmp_path / "w.pt")), outputs(reference))


def test_torchvision_and_timm_with_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = models.load("torchvision:resnet18", num_classes=10)
    torch.save({"model": first.state_dict()}, tmp_path / "tv.pt")
    again = models.load("torchvision:resnet18", num_classes=10, weights=tmp_path / "tv.pt")
    inputs = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(first(inputs), again(inputs))
    timm_model = models.load("timm:test_resnet", num_classes=7)
    torch.save(timm_model.state_dict(), tmp_path / "timm.pt")
    loaded = models.load("timm:test_resnet", num_classes=7, weights=tmp_path / "timm.pt")
    with torch.no_grad():
        assert loaded(inputs).shape == (2, 7) and torch.equal(loaded(inputs), timm_model(inputs))


def test_without_timm_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ValueError, match=r"needs the timm package: pip install 'edgewise\[timm\]'"):
        models.load("timm:resnet18")


def test_identity_hashes_every_file_read(tmp_path: Path, net) -> None:
    path, _ = net
    weights = path.with_suffix(".pt")
    described = models.identity(f"{path}:Net", weights=weights, model_args='{"width": 4}', mean=[0.5], std=0.25)
    assert described["kind"] == "python" and described["model_args"] == {"width": 4}
    assert described["mean"] == [0.5] and described["std"] == [0.25]
    assert described["files"] == {str(path): hashlib.sha256(path.read_bytes()).hexdigest(),
                                  str(weights): hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert models.identity("smallcnn-fmnist")["files"]["smallcnn-fmnist.pt"] == \
        models.list_models()["smallcnn-fmnist"]["sha256"]
    assert models.identity("torchvision:resnet18")["library_version"].startswith("0.")


def bad_model(tmp: Path, net_path: Path, case: str) -> str:
    """Write what ``case`` needs under ``tmp``; returns the model spec."""
    if case == "syntax":
        (tmp / "broken.py").write_text("def build(:\n")
        return f"{tmp / 'broken.py'}:build"
    if case == "checkpoint-as-model":
        return str(net_path.with_suffix(".pt"))
    if case == "static-batch-pt2":  # exported without dynamic_shapes: every batch must have 2 inputs
        program = torch.export.export(models.load(f"{net_path}:Net"), (torch.rand(2, 1, 9, 9),))
        torch.export.save(program, tmp / "static.pt2")
        return str(tmp / "static.pt2")
    if case == "truncated-pt2":
        (tmp / "m.pt2").write_bytes(net_path.with_suffix(".pt").read_bytes()[:100])
        return str(tmp / "m.pt2")
    return case.replace("NET", str(net_path))


def bad_weights(tmp: Path, net_path: Path, case: str) -> Path:
    state = torch.load(net_path.with_suffix(".pt"), weights_only=True)
    if case == "missing-key":
        state.pop("head.bias")
        state["extra.weight"] = torch.zeros(1)
    elif case == "shape":
        state["head.weight"] = torch.zeros(3, 4)
    elif case == "no-state":
        state = {"epoch": 3, "lr": 0.1}
    elif case == "whole-module":  # torch.save(model): unpickling it would run the module's code
        state = {"model": nn.Linear(2, 2)}
    elif case == "truncated":
        torch.save(state, tmp / "w.pt")
        (tmp / "w.pt").write_bytes((tmp / "w.pt").read_bytes()[:200])
        return tmp / "w.pt"
    elif case == "absent":
        return tmp / "absent.pt"
    torch.save(state, tmp / "w.pt")
    return tmp / "w.pt"


BAD_MODELS = [
    ("nonexistent-model", {}, ValueError, "neither a zoo model"),
    (f"{Path('missing') / 'x.py'}:Net", {}, ValueError, "no such file"),
    ("NET", {}, ValueError, "must name the function or class"),
    ("NET:Nope", {}, ValueError, r"has no function or class 'Nope' \(it defines: Net, not_a_model\)"),
    ("syntax", {}, ValueError, "failed to import: SyntaxError"),
    ("NET:not_a_model", {}, TypeError, "must return a torch.nn.Module, got int"),
    ("NET:Net", {"model_args": '{"bogus": 1}'}, ValueError, "do not fit .*Net.*bogus"),
    ("NET:Net", {"model_args": "{width: 3}"}, ValueError, "--model-args must be a JSON object"),
    ("NET:Net", {"model_args": "[1, 2]"}, TypeError, "--model-args must be a JSON object"),
    ("NET:Net", {"model_args": '{"num_classes": 3}', "num_classes": 3}, ValueError, "give it once"),
    ("NET:Net", {"weights": "missing-key"}, ValueError, "do not fit the model: missing keys: head.bias; "
                                                        "unexpected keys: extra.weight"),
    ("NET:Net", {"weights": "shape"}, ValueError, r"shapes \(file vs model\): head.weight \(3, 4\) vs \(10, 4\)"),
    ("NET:Net", {"weights": "no-state"}, ValueError, r"holds no state dict .* got \['epoch', 'lr'\]"),
    ("NET:Net", {"weights": "truncated"}, ValueError, "not a readable torch.save checkpoint"),
    ("NET:Net", {"weights": "whole-module"}, ValueError, r"pickles Python objects \(torch.nn.modules.linear.Linear\)"
                                                         r", which are not run .*save model.state_dict\(\)"),
    ("NET:Net", {"weights": "absent"}, ValueError, "--weights .* no such file"),
    ("checkpoint-as-model", {}, ValueError, "not a readable TorchScript archive .* it is a checkpoint"),
    ("truncated-pt2", {}, ValueError, "not a readable torch.export program"),
    ("static-batch-pt2", {}, ValueError, r"static.pt2' was exported for batches of 2 inputs only \(input x of shape "
                                         r"\(2, 1, 9, 9\)\): export it with dynamic_shapes=.*Dim\('batch'\)"),
    ("torchvision:nonet", {}, ValueError, "is not a torchvision model"),
    ("torchvision:resnet18", {"model_args": {"weights": "DEFAULT"}}, ValueError, "downloads nothing"),
    ("timm:nonet", {}, ValueError, "is not a timm model"),
    ("smallcnn-fmnist", {"weights": "shape"}, ValueError, "--weights does not apply to zoo model"),
    ("smallcnn-fmnist", {"mean": 0.5}, ValueError, "--mean/--std does not apply to zoo model"),
    ("checkpoint-as-model", {"num_classes": 3}, ValueError, "--num-classes does not apply to the saved program"),
    ("NET:Net", {"num_classes": 0}, ValueError, "--num-classes must be a positive int"),
    ("NET:Net", {"std": [0.5, -1]}, ValueError, "--std must be positive"),
    ("NET:Net", {"mean": [125.3, 123.0, 113.9], "std": [63.0, 62.1, 66.7]}, ValueError,
     r"--mean must be in \[0, 1\], got \[125.3, 123.0, 113.9\].* 0-255 scale: divide them by 255"),
    ("NET:Net", {"mean": -0.5}, ValueError, r"--mean must be in \[0, 1\]"),
    ("NET:Net", {"mean": 0.5, "std": 63.0}, ValueError, r"--std must be in \(0, 1\], got \[63.0\].* 255"),
    ("NET:Net", {"mean": [0.1, 0.2], "std": [0.1, 0.2, 0.3]}, ValueError, "same number of values"),
    ("NET:Net", {"mean": "red"}, TypeError, "--mean must be a number or a list"),
    ("NET:Net", {"device": "cuda:7"}, ValueError, "device 'cuda:7'"),
]


@pytest.mark.parametrize(("case", "kwargs", "error", "match"), BAD_MODELS)
def test_bad_model_specs_raise_one_clear_error(tmp_path: Path, net, case: str, kwargs: dict, error: type,
                                               match: str) -> None:
    net_path, _ = net
    if isinstance(kwargs.get("weights"), str):
        kwargs = {**kwargs, "weights": bad_weights(tmp_path, net_path, kwargs["weights"])}
    if case == "checkpoint-as-model" and "num_classes" in kwargs:  # a real TorchScript file, then num_classes
        torch.jit.save(torch.jit.trace(net[1], torch.rand(1, 1, 9, 9)), tmp_path / "net.ts")
        spec = str(tmp_path / "net.ts")
    else:
        spec = bad_model(tmp_path, net_path, case)
    with pytest.raises(error, match=match) as raised:
        models.load(spec, **kwargs)
    assert "\n" not in str(raised.value)


def test_a_state_dict_without_num_batches_tracked_loads_as_torch_loads_it(tmp_path: Path) -> None:
    # Before: refused as "missing keys: 1.num_batches_tracked", while torch's own strict load_state_dict fills that
    # counter in for state dicts without version metadata (older or converted checkpoints).
    torch.manual_seed(0)
    source = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 7 * 7, 3))
    source[1].running_mean.uniform_(-1, 1)
    source[1].running_var.uniform_(0.5, 2)
    state = {key: value for key, value in source.state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "w.pt")
    target = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 7 * 7, 3))
    reference = copy.deepcopy(target)
    reference.load_state_dict(state, strict=True)
    load_weights(target, tmp_path / "w.pt")
    inputs = torch.rand(4, 1, 9, 9)
    assert torch.equal(target.eval()(inputs), source.eval()(inputs))
    assert torch.equal(target.state_dict()["1.num_batches_tracked"], reference.state_dict()["1.num_batches_tracked"])
    del state["1.running_var"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"missing keys: 1\.running_var$"):
        load_weights(target, tmp_path / "w.pt")
