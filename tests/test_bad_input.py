"""Malformed input thrown at the public API and the command line: only the documented errors come back.

Documented: ``TypeError`` / ``ValueError`` (``DataFileError`` is a ``ValueError``) whose message names the argument;
the command line returns 2 with one line on stderr and writes nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import io
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from edgewise import distances, projections
from edgewise.attacks import ATTACKS
from edgewise.cli import main
from edgewise.data import fashion_mnist, read_idx
from edgewise.data.idx import write_idx
from edgewise.eval import run_attack
from edgewise.models import load_model, zoo

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = 3
MODEL = nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES)).eval()
LOCAL_DISTANCES = [name for name in distances.names() if name != "lpips"]  # lpips needs downloaded weights

Case = tuple[Any, Any, type[Exception], str]


@st.composite
def bad_batches(draw: st.DrawFn) -> Case:
    """(inputs, labels, expected error, argument it must name) for inputs (B, 1, 4, 4) and labels (B,)."""
    batch = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    inputs = torch.rand(batch, 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(batch) % CLASSES
    kind = draw(st.sampled_from(["non_finite", "outside", "empty", "rank", "int_inputs", "list_inputs",
                                 "float_labels", "narrow_labels", "labels_shape", "negative_label", "label_too_large"]))
    if kind == "non_finite":
        inputs.view(-1)[draw(st.integers(0, inputs.numel() - 1))] = draw(st.sampled_from([float("nan"),
                                                                                         float("inf"), -float("inf")]))
        return inputs, labels, ValueError, "inputs"
    if kind == "outside":
        value = draw(st.one_of(st.floats(-1e6, -1e-3), st.floats(1.001, 1e6)))
        inputs.view(-1)[draw(st.integers(0, inputs.numel() - 1))] = value
        return inputs, labels, ValueError, "inputs"
    if kind == "empty":
        return inputs[:0], labels[:0], ValueError, "inputs"
    if kind == "rank":
        return inputs.flatten()[:batch], labels, ValueError, "inputs"
    if kind == "int_inputs":
        return (inputs * 255).to(draw(st.sampled_from([torch.uint8, torch.int64]))), labels, TypeError, "inputs"
    if kind == "list_inputs":
        return inputs.tolist(), labels, TypeError, "inputs"
    if kind == "float_labels":
        return inputs, labels.float(), TypeError, "labels"
    if kind == "narrow_labels":  # class indices are int64 (torch's losses and gather refuse the others)
        return inputs, labels.to(draw(st.sampled_from([torch.int32, torch.uint8, torch.int16]))), TypeError, "labels"
    if kind == "labels_shape":
        wrong = draw(st.sampled_from([labels.unsqueeze(1), torch.cat([labels, labels[:1]]), labels[:0]]))
        return inputs, wrong, ValueError, "labels"
    if kind == "negative_label":
        labels[draw(st.integers(0, batch - 1))] = draw(st.integers(-1000, -1))
        return inputs, labels, ValueError, "labels"
    labels[draw(st.integers(0, batch - 1))] = draw(st.integers(CLASSES, 1000))
    return inputs, labels, ValueError, "labels"


def expect(error: type[Exception], name: str, call: Callable[[], object]) -> None:
    with pytest.raises((TypeError, ValueError)) as caught:
        call()
    assert isinstance(caught.value, error), f"{type(caught.value).__name__}: {caught.value}"
    assert name in str(caught.value), str(caught.value)


def budget(name: str) -> dict[str, Any]:
    return {"steps": 1, **({"eps": 0.1} if name == "pgd" else {})}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@SETTINGS
@given(case=bad_batches())
def test_attacks_reject_malformed_batches(name: str, case: Case) -> None:
    inputs, labels, error, argument = case
    expect(error, argument, lambda: ATTACKS[name](MODEL, inputs, labels, **budget(name)))


@pytest.mark.parametrize("name", sorted(ATTACKS))
@SETTINGS
@given(keyword=st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True))
def test_attacks_reject_unknown_keywords(name: str, keyword: str) -> None:
    if keyword in {"steps", "eps"} or keyword in inspect.signature(ATTACKS[name]).parameters:
        return
    inputs, labels = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    expect(TypeError, keyword, lambda: ATTACKS[name](MODEL, inputs, labels, **budget(name), **{keyword: 1}))


def numeric_options(name: str) -> list[str]:
    """The keyword-only numeric hyper-parameters of attack ``name`` (``eps`` included when it has no default)."""
    return [p.name for p in inspect.signature(ATTACKS[name]).parameters.values()
            if p.kind is p.KEYWORD_ONLY and (p.name == "eps" or (isinstance(p.default, (int, float))
                                                                 and not isinstance(p.default, bool)))]


@pytest.mark.parametrize("name", sorted(ATTACKS))
@SETTINGS
@given(data=st.data())
def test_attacks_reject_non_finite_or_non_numeric_options(name: str, data: st.DataObject) -> None:
    option = data.draw(st.sampled_from(numeric_options(name)))
    value = data.draw(st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf")]), st.text(max_size=3)))
    inputs, labels = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    expect(Exception, option, lambda: ATTACKS[name](MODEL, inputs, labels, **{**budget(name), option: value}))


@SETTINGS
@given(case=bad_batches())
def test_run_attack_rejects_malformed_batches(case: Case) -> None:
    inputs, labels, error, argument = case
    expect(error, argument, lambda: run_attack(MODEL, inputs, labels, ATTACKS["ddn"], progress=False))


@SETTINGS
@given(option=st.sampled_from(["batch_size", "levels", "attack", "indices", "seed"]), value=st.one_of(
    st.integers(-5, 1), st.text(max_size=3), st.floats(allow_nan=True), st.none()))
def test_run_attack_rejects_bad_options(option: str, value: Any) -> None:
    valid = {"batch_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
             "levels": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 2),
             "attack": callable, "indices": lambda v: v is None, "seed": lambda v: isinstance(v, int)}
    if valid[option](value):
        return
    inputs, labels = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    expect(Exception, option, lambda: run_attack(MODEL, inputs, labels, **{"attack": ATTACKS["ddn"], option: value},
                                                 progress=False))


def _distance_case(draw: st.DrawFn) -> Case:
    reference = torch.rand(2, 3, 16, 16)
    kind = draw(st.sampled_from(["list", "int", "rank", "shape"]))
    which = "perturbed" if kind == "shape" else draw(st.sampled_from(["reference", "perturbed"]))
    if kind == "list":
        bad: Any = reference.tolist()
    elif kind == "int":
        bad = (reference * 255).long()
    elif kind == "rank":
        bad = reference.flatten()[: draw(st.integers(0, 8))]
    else:
        bad = torch.rand(*[size + draw(st.integers(0, 1)) for size in reference.shape[:-1]], 17)
    error = TypeError if kind in ("list", "int") else ValueError
    if which == "reference":
        return bad, reference, error, "reference"
    return reference, bad, error, "perturbed"


@pytest.mark.parametrize("name", LOCAL_DISTANCES)
@SETTINGS
@given(data=st.data())
def test_distances_reject_malformed_tensors(name: str, data: st.DataObject) -> None:
    reference, perturbed, error, argument = _distance_case(data.draw)
    expect(error, argument, lambda: distances.get(name)(reference)(perturbed))


@SETTINGS
@given(name=st.text(max_size=12))
def test_unknown_distance_names(name: str) -> None:
    if name in distances.names():
        return
    expect(ValueError, "distance", lambda: distances.get(name))


@SETTINGS
@given(norm=st.sampled_from(["l0", "l1", "l2", "linf"]), data=st.data())
def test_project_rejects_bad_arguments(norm: str, data: st.DataObject) -> None:
    delta, x = torch.randn(3, 5), torch.rand(3, 5)
    kind = data.draw(st.sampled_from(["eps", "eps_tensor", "norm", "delta", "x"]))
    arguments: dict[str, Any] = {"delta": delta, "x": x, "norm": norm, "eps": 0.5}
    if kind == "eps":
        arguments["eps"] = data.draw(st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")), st.just(float("inf")),
                                               st.text(max_size=2), st.none()))
    elif kind == "eps_tensor":
        arguments["eps"] = data.draw(st.sampled_from([torch.ones(2), torch.full((3,), -1.0),
                                                      torch.tensor([0.1, float("nan"), 0.2])]))
    elif kind == "norm":
        arguments["norm"] = data.draw(st.text(max_size=5).filter(lambda t: t not in ("l0", "l1", "l2", "linf")))
    elif kind == "delta":
        arguments["delta"] = data.draw(st.sampled_from([delta.flatten(), delta.long(), delta.tolist()]))
    else:
        arguments["x"] = data.draw(st.sampled_from([x[:2], x.flatten(), x.tolist()]))
    expect(Exception, kind.removesuffix("_tensor"), lambda: projections.project(
        arguments["delta"], arguments["x"], norm=arguments["norm"], eps=arguments["eps"]))


@SETTINGS
@given(name=st.text(max_size=20), device=st.one_of(st.sampled_from(["cpu"]), st.text(max_size=8), st.integers()))
def test_load_model_rejects_unknown_names_and_devices(name: str, device: Any) -> None:
    if device == "cpu" and name in zoo.list_models():
        return
    expect(Exception, "device" if device != "cpu" else "model", lambda: load_model(name, device=device))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999))
def test_load_model_rejects_truncated_weights(cut: float, monkeypatch: pytest.MonkeyPatch) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for path in zoo.WEIGHTS.iterdir():
            if path.name.startswith("mlp-fmnist."):
                shutil.copy(str(path), folder)
        weights = Path(folder) / "mlp-fmnist.pt"
        weights.write_bytes(weights.read_bytes()[: int(cut * weights.stat().st_size)])
        with monkeypatch.context() as patch:
            patch.setattr(zoo, "WEIGHTS", Path(folder))
            expect(ValueError, "weights", lambda: load_model("mlp-fmnist"))


@SETTINGS
@given(cut=st.integers(0, 4 + 4 * 3 + 3 * 5 * 5 - 1), gzipped=st.booleans(), garbage=st.binary(max_size=8))
def test_read_idx_rejects_truncated_files(cut: int, gzipped: bool, garbage: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        whole = Path(folder) / "whole"
        write_idx(whole, torch.zeros(3, 5, 5, dtype=torch.uint8))
        raw = gzip.decompress(whole.read_bytes())
        path = Path(folder) / ("cut.gz" if gzipped else "cut")
        truncated = raw[:cut]
        path.write_bytes(gzip.compress(truncated) if gzipped else truncated)
        expect(ValueError, str(path), lambda: read_idx(path, ndim=3))
        path.write_bytes(garbage + raw[len(garbage):cut] if gzipped else garbage)
        expect(ValueError, str(path), lambda: read_idx(path, ndim=3))


@SETTINGS
@given(split=st.text(max_size=6))
def test_fashion_mnist_rejects_unknown_splits(split: str) -> None:
    if split in ("train", "test"):
        return
    expect(ValueError, "split", lambda: fashion_mnist(split, root="/nonexistent"))


def _bad_cli_option(draw: st.DrawFn) -> list[str]:
    integers = st.one_of(st.integers(-10**6, 0).map(str), st.text("abc.-", min_size=1, max_size=4))
    option = draw(st.sampled_from(["--n", "--batch-size", "--steps", "--model", "--attack", "--distance",
                                   "--attack-options", "--levels", "--eps", "--device", "--data", "--unknown"]))
    if option in ("--n", "--batch-size", "--steps"):
        return [option, draw(integers)]
    if option == "--levels":
        return [option, draw(st.one_of(st.integers(-5, 1).map(str), st.just("x")))]
    if option == "--eps":
        return [option, draw(st.sampled_from(["-1", "nan", "a,b", "0.5,-0.1"]))]
    if option == "--attack-options":
        return [option, draw(st.sampled_from(["[1]", "{", "1", '{"no_such_option": 1}', "null"]))]
    if option == "--device":
        return [option, draw(st.sampled_from(["nope", "cuda:99", "gpu", ""]))]
    if option == "--data":
        return [option, draw(st.text("xyz", min_size=1, max_size=3))]
    if option == "--unknown":
        return ["--frobnicate", "1"]
    return [option, draw(st.text("qxz", min_size=1, max_size=5))]


@SETTINGS
@given(data=st.data())
def test_cli_bad_arguments_exit_2_with_one_line_and_write_nothing(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        argv = ["attack", "--n", "4", "--steps", "2", "--no-progress", "--out", str(out), *_bad_cli_option(data.draw)]
        if "--distance" in argv:
            argv += ["--attack", "alma"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
        assert status == 2, argv
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgewise") and "Traceback" not in lines[0], (argv, lines)
        assert not out.exists(), argv


@pytest.mark.parametrize("cut", [0.0, 0.01, 0.9])
def test_cli_truncated_data_files(tmp_path: Path, cut: float, capsys: pytest.CaptureFixture[str]) -> None:
    images = torch.zeros(10_000, 28, 28, dtype=torch.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", torch.zeros(10_000, dtype=torch.uint8))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[: int(cut * path.stat().st_size)])
    out = tmp_path / "out"
    assert main(["attack", "--data", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t10k-images-idx3-ubyte.gz" in err[0]
    assert not out.exists()


OTHER_COMMANDS = {
    "benchmark": {"--model": "name", "--attack": "name", "--distance": "name", "--steps": "list", "--n": "count",
                  "--batch-size": "count", "--device": "name"},
    "minmax": {"--kind": "name", "--model": "name", "--distance": "name", "--eps": "list", "--steps": "count",
               "--step-size": "number", "--weight-step": "number", "--gamma": "number", "--n": "count",
               "--batch-size": "count"},
    "train": {"--architecture": "name", "--model": "name", "--data": "name", "--recipe": "name", "--epochs": "count",
              "--batch-size": "count",
              "--optimizer": "name", "--lr": "number", "--weight-decay": "number", "--lr-milestones": "list",
              "--in-channels": "count", "--recipe-options": "name", "--train-samples": "count", "--device": "name"},
}
SMALL = {"benchmark": ["--n", "4", "--steps", "1"], "minmax": ["--n", "4", "--steps", "1"],
         "train": ["--epochs", "1", "--train-samples", "8"]}
BAD_VALUES = {
    "name": st.text("qxz", min_size=1, max_size=4),
    "count": st.one_of(st.integers(-10**6, 0).map(str), st.text("abc.", min_size=1, max_size=3)),
    "number": st.sampled_from(["-1", "nan", "inf", "x"]),
    "list": st.sampled_from(["a,b", "-1", "0,x"]),
}


@SETTINGS
@given(data=st.data())
def test_other_commands_bad_arguments_exit_2_with_one_line(data: st.DataObject) -> None:
    command = data.draw(st.sampled_from(sorted(OTHER_COMMANDS)))
    option, kind = data.draw(st.sampled_from(sorted(OTHER_COMMANDS[command].items())))
    with tempfile.TemporaryDirectory() as folder:
        argv = [command, *SMALL[command], "--out", str(Path(folder) / "out"), option, data.draw(BAD_VALUES[kind])]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
        lines = err.getvalue().strip().splitlines()
        assert status == 2 and len(lines) == 1 and "Traceback" not in lines[0], (argv, lines)
