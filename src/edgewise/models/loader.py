"""One model spec for the library and every command: zoo name, ``file.py:NAME``, TorchScript, ``.pt2``,
``torchvision:NAME``, ``timm:NAME``; weights, constructor arguments, classes and normalization (DESIGN.md).

Every loaded model maps inputs in [0, 1] to logits: ``mean``/``std`` wrap it in :class:`Normalize`, so attacks
and distances never see normalized inputs. Bad specs raise a ``ValueError``/``TypeError`` in one line naming the
argument by its command-line name (``--model``, ``--weights``, ``--model-args``, ``--num-classes``, ``--mean``,
``--std``), which the command line prints as it is.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import json
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgewise.models.wrappers import Normalize
from edgewise.models.zoo import list_models, load_model, sha256_file
from edgewise.validation import check_device

# Keys under which training scripts usually keep the state dict inside a checkpoint dict, in the order tried.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "ema")
# Prefixes that wrappers add to every key: DataParallel / DistributedDataParallel, torch.compile.
KEY_PREFIXES = ("module.", "_orig_mod.")
KINDS = ("zoo", "python", "torchscript", "export", "torchvision", "timm")


def _file(path: str, argument: str) -> Path:
    found = Path(path).expanduser()
    if not found.is_file():
        raise ValueError(f"{argument} {path!r}: no such file")
    return found


def kind_of(spec: str) -> str:
    """Which of :data:`KINDS` the model ``spec`` is (without loading anything)."""
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"--model must be a non-empty string, got {spec!r}")
    if spec.startswith("torchvision:"):
        return "torchvision"
    if spec.startswith("timm:"):
        return "timm"
    if ".py:" in spec or spec.endswith(".py"):
        return "python"
    if spec in list_models():
        return "zoo"
    if spec.endswith(".pt2"):
        return "export"
    if Path(spec).expanduser().is_file():
        return "torchscript"
    raise ValueError(
        f"--model {spec!r} is neither a zoo model ({', '.join(sorted(list_models()))}), nor file.py:NAME, nor a "
        "TorchScript/.pt2 file that exists, nor torchvision:NAME or timm:NAME"
    )


def parse_model_args(model_args: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """``model_args`` as keyword arguments: a mapping with string keys, or its JSON text."""
    if model_args is None:
        return {}
    if isinstance(model_args, str):
        try:
            model_args = json.loads(model_args)
        except json.JSONDecodeError as error:
            raise ValueError(f"--model-args must be a JSON object, got {model_args!r} ({error})") from error
    if not isinstance(model_args, Mapping) or not all(isinstance(key, str) for key in model_args):
        raise TypeError(f"--model-args must be a JSON object (a dict with string keys), got {model_args!r}")
    return dict(model_args)


def _channels(name: str, value: float | Sequence[float] | None) -> list[float] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, (int, float)) else list(value)
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be a number or a list of numbers (one per channel), got {value!r}")
    return [float(v) for v in values]


def _normalization(mean: Any, std: Any) -> tuple[list[float], list[float]] | None:
    means, stds = _channels("--mean", mean), _channels("--std", std)
    if means is None and stds is None:
        return None
    means = means if means is not None else [0.0]
    stds = stds if stds is not None else [1.0]
    if len(means) != len(stds) and 1 not in (len(means), len(stds)):
        raise ValueError(f"--mean and --std must have the same number of values (one per channel), got "
                         f"{len(means)} and {len(stds)}")
    if any(s <= 0 for s in stds):
        raise ValueError(f"--std must be positive, got {stds}")
    # The model sees (x - mean) / std of inputs in [0, 1]: a mean outside [0, 1] or a std above 1 is on another
    # scale (most often 0-255, as CIFAR code writes them), and would feed the model garbage without an error.
    scale = "--mean/--std are on the scale of the inputs in [0, 1] (values on the 0-255 scale: divide them by 255)"
    if any(not 0 <= m <= 1 for m in means):
        raise ValueError(f"--mean must be in [0, 1], got {means}: {scale}")
    if any(s > 1 for s in stds):
        raise ValueError(f"--std must be in (0, 1], got {stds}: {scale}")
    size = max(len(means), len(stds))
    return means * (size // len(means)), stds * (size // len(stds))


def _check_applies(kind: str, spec: str, *, weights: Any, model_args: dict[str, Any], num_classes: Any,
                   normalization: Any) -> None:
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ValueError(f"--num-classes must be a positive int, got {num_classes!r}")
    if kind == "zoo":
        given = [name for name, value in (("--weights", weights), ("--model-args", model_args or None),
                                          ("--num-classes", num_classes), ("--mean/--std", normalization))
                 if value is not None]
        if given:
            raise ValueError(f"{given[0]} does not apply to zoo model {spec!r}: its weights, classes and "
                             "normalization are fixed (see `edgewise models`)")
    if kind in ("torchscript", "export"):
        for name, value in (("--model-args", model_args or None), ("--num-classes", num_classes)):
            if value is not None:
                raise ValueError(f"{name} does not apply to the saved program {spec!r}, whose architecture is fixed")


def _import_file(path: Path) -> Any:
    """Execute a user's .py file as a module named after its content (two different files never clash)."""
    name = f"edgewise_user_{path.stem}_{sha256_file(path)[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--model {str(path)!r} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ValueError(f"--model {str(path)!r} failed to import: {type(error).__name__}: {error}") from error
    return module


def _call(factory: Any, where: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as error:
        raise ValueError(f"--model-args/--num-classes {kwargs} do not fit {where}: {error}") from error
    except ValueError:  # no signature (a builtin): let the call itself say what is wrong
        pass
    try:
        model = factory(**kwargs)
    except Exception as error:
        raise ValueError(f"--model {where}({', '.join(kwargs)}) raised {type(error).__name__}: {error}") from error
    if not isinstance(model, nn.Module):
        raise TypeError(f"--model {where} must return a torch.nn.Module, got {type(model).__name__}")
    return model


def _from_python(spec: str, model_args: dict[str, Any], num_classes: int | None) -> nn.Module:
    file, _, name = spec.rpartition(":") if ".py:" in spec else (spec, "", "")
    if not name:
        raise ValueError(f"--model {spec!r} must name the function or class that builds the model: "
                         f"{spec}:NAME")
    module = _import_file(_file(file, "--model"))
    factory = getattr(module, name, None)
    if not callable(factory):
        found = sorted(key for key, value in vars(module).items()
                       if callable(value) and not key.startswith("_") and getattr(value, "__module__", "") ==
                       module.__name__)
        raise ValueError(f"--model {file!r} has no function or class {name!r} (it defines: "
                         f"{', '.join(found) or 'none'})")
    kwargs = dict(model_args)
    if num_classes is not None:
        if "num_classes" in kwargs:
            raise ValueError("--num-classes and --model-args both give num_classes; give it once")
        kwargs["num_classes"] = num_classes
    return _call(factory, f"{file}:{name}", kwargs)


def _from_torchvision(name: str, model_args: dict[str, Any], num_classes: int | None) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models()
    if name not in available:
        raise ValueError(f"--model torchvision:{name} is not a torchvision model; known: "
                         f"{', '.join(available[:8])}, ... ({len(available)}, see torchvision.models.list_models())")
    if "weights" in model_args:
        raise ValueError("--model-args must not set weights (edgewise downloads nothing): pass a state dict "
                         "file with --weights")
    kwargs = {**model_args, **({"num_classes": num_classes} if num_classes is not None else {})}
    builder = torchvision.models.get_model_builder(name)
    return _call(lambda **k: builder(weights=None, **k), f"torchvision:{name}", kwargs)


def _from_timm(name: str, model_args: dict[str, Any], num_classes: int | None) -> nn.Module:
    try:
        import timm
    except ImportError as error:
        raise ValueError(f"--model timm:{name} needs the timm package: pip install 'edgewise[timm]'") from error
    if not timm.is_model(name):
        raise ValueError(f"--model timm:{name} is not a timm model (see timm.list_models())")
    if "pretrained" in model_args:
        raise ValueError("--model-args must not set pretrained (edgewise downloads nothing): pass a state dict "
                         "file with --weights")
    kwargs = {**model_args, **({"num_classes": num_classes} if num_classes is not None else {})}
    return _call(lambda **k: timm.create_model(name, pretrained=False, **k), f"timm:{name}", kwargs)


def _numpy_global(name: str) -> Any:
    """The numpy object a checkpoint's pickle names, when it only rebuilds data (scalars, arrays, dtypes)."""
    module, _, attribute = name.rpartition(".")
    if module.split(".")[0] != "numpy" or not (
            attribute in ("dtype", "ndarray", "scalar", "_reconstruct") or module == "numpy.dtypes"):
        return None
    try:
        return getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        return None


class PickledObjectsError(pickle.UnpicklingError):
    """A checkpoint that pickles Python objects other than tensors and numpy data (``torch.save(model)``)."""


def torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (no code runs), also taking the numpy scalars and arrays that
    training scripts keep beside the state dict (``best_acc``, ``epoch``). A file that pickles other objects (a
    whole model saved with ``torch.save(model)``) raises :class:`PickledObjectsError` naming them."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        found = {name: _numpy_global(name) for name in unsafe}
        others = [name for name, value in found.items() if value is None]
        if others or not found:
            raise PickledObjectsError(
                f"it pickles Python objects ({', '.join(others[:3]) or '?'}), which are not run (edgewise reads "
                "checkpoints with weights_only=True): save model.state_dict() instead") from None
        import numpy as np

        # numpy.dtype(...) builds instances of the classes of numpy.dtypes, which the unpickler checks too.
        dtypes = [value for value in vars(np.dtypes).values() if isinstance(value, type)]
        with torch.serialization.safe_globals([*((value, name) for name, value in found.items()), *dtypes]):
            return torch.load(path, map_location="cpu", weights_only=True)


def _is_checkpoint(path: Path) -> bool:
    try:
        torch_load(path)
    except Exception:
        return False
    return True


def _torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        hint = ("; it is a checkpoint: pass it with --weights and the model's code as --model file.py:NAME"
                if _is_checkpoint(path) else "")
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--model {str(path)!r} is not a readable TorchScript archive ({first}){hint}") from error


class ExportedModule(nn.Module):
    """The module of a ``torch.export`` program. Its train/eval behaviour was fixed when it was exported, so
    it reports eval mode and refuses train mode (the exported module itself raises on ``.eval()``)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        for inner in module.modules():
            inner.training = False
        self.training = False

    def train(self, mode: bool = True) -> ExportedModule:
        if mode:
            raise ValueError("a torch.export program cannot be put in train mode: its mode was fixed at export")
        return self

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.module(inputs)
        return output


def _exported(path: Path) -> nn.Module:
    try:
        program = torch.export.load(str(path))
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--model {str(path)!r} is not a readable torch.export program ({first})") from error
    # A program exported without dynamic_shapes takes batches of the example's size only; it would pass the check
    # of two images when exported with two, then fail on another batch size with an AssertionError of its guards.
    names = program.graph_signature.user_inputs
    inputs = [node for node in program.graph.nodes if node.op == "placeholder" and node.name in names]
    shape = getattr(inputs[0].meta.get("val"), "shape", None) if len(inputs) == 1 else None
    if shape is not None and len(shape) > 0 and isinstance(shape[0], int):
        raise ValueError(f"--model {str(path)!r} was exported for batches of {shape[0]} inputs only (input "
                         f"{inputs[0].name} of shape {tuple(shape)}): export it with dynamic_shapes="
                         f"{{{inputs[0].name!r}: {{0: torch.export.Dim('batch')}}}}")
    return program.module()


def read_state_dict(weights: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in the file ``weights``: a state dict, or a checkpoint dict holding one under one of
    :data:`STATE_DICT_KEYS`; the key prefixes of :data:`KEY_PREFIXES` are removed. Read with weights_only."""
    path = _file(str(weights), "--weights")
    try:
        loaded = torch_load(path)
    except PickledObjectsError as error:
        raise ValueError(f"--weights {str(path)!r}: {error}") from error
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--weights {str(path)!r} is not a readable torch.save checkpoint (truncated, or not "
                         f"saved with torch.save of tensors: {first[:200]})") from error

    def is_state(value: Any) -> bool:
        return isinstance(value, Mapping) and bool(value) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())

    state = loaded if is_state(loaded) else None
    if state is None and isinstance(loaded, Mapping):
        state = next((loaded[key] for key in STATE_DICT_KEYS if key in loaded and is_state(loaded[key])), None)
    if state is None:
        keys = list(loaded)[:8] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ValueError(f"--weights {str(path)!r} holds no state dict (a dict of tensors, or one under "
                         f"{'/'.join(STATE_DICT_KEYS)}), got {keys}")
    # Wrappers nest in either order (DDP of a compiled model, or the compile of a DDP one): strip until none fits.
    while (prefix := next((p for p in KEY_PREFIXES if all(key.startswith(p) for key in state)), None)) is not None:
        state = {key.removeprefix(prefix): value for key, value in state.items()}
    return dict(state)


def load_weights(model: nn.Module, weights: str | Path) -> None:
    """Load ``weights`` into ``model`` strictly; a mismatch lists the missing, unexpected and misshapen keys."""
    state = read_state_dict(weights)
    expected = model.state_dict()
    # BatchNorm's counter: torch's strict load fills it in for a state dict without version metadata (older or
    # converted checkpoints), so its absence is no mismatch.
    missing = [key for key in expected if key not in state and not key.endswith(".num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    misshapen = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
                 if key in state and state[key].shape != value.shape]
    if missing or unexpected or misshapen:
        def shown(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f", ... ({len(keys)})" if len(keys) > 5 else "")

        parts = [f"{label} {shown(keys)}" for label, keys in
                 (("missing keys:", missing), ("unexpected keys:", unexpected),
                  ("shapes (file vs model):", misshapen)) if keys]
        raise ValueError(f"--weights {str(weights)!r} do not fit the model: {'; '.join(parts)}")
    model.load_state_dict(state, strict=True)


def load(spec: str, *, weights: str | Path | None = None, model_args: Mapping[str, Any] | str | None = None,
         num_classes: int | None = None, mean: float | Sequence[float] | None = None,
         std: float | Sequence[float] | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The model ``spec`` in eval mode on ``device``, mapping inputs in [0, 1] to logits.

    ``spec``: a zoo name (:func:`list_models`); ``path/file.py:NAME`` with ``NAME`` a function or class of that
    file returning an ``nn.Module``, called with ``model_args`` (a dict or its JSON) and ``num_classes`` as
    keyword arguments; a TorchScript archive (``torch.jit.save``); a ``torch.export`` program (``.pt2``,
    ``torch.export.save``); ``torchvision:NAME`` or ``timm:NAME`` (built with random weights, never downloaded,
    ``num_classes`` and ``model_args`` passed to the builder). ``weights``: a ``torch.save`` file with a state
    dict or a checkpoint dict holding one (``state_dict``, ``model``, ...; ``module.`` prefixes removed),
    loaded strictly. ``mean``/``std`` (one value or one per channel, as torchvision's ``Normalize``) put a
    :class:`Normalize` in front of the model.
    """
    chosen = check_device(device)
    kind = kind_of(spec)
    args = parse_model_args(model_args)
    normalization = _normalization(mean, std)
    _check_applies(kind, spec, weights=weights, model_args=args, num_classes=num_classes,
                   normalization=normalization)
    if kind == "zoo":
        return load_model(spec, device=chosen)
    if kind == "python":
        model = _from_python(spec, args, num_classes)
    elif kind == "torchvision":
        model = _from_torchvision(spec.removeprefix("torchvision:"), args, num_classes)
    elif kind == "timm":
        model = _from_timm(spec.removeprefix("timm:"), args, num_classes)
    elif kind == "export":
        model = _exported(_file(spec, "--model"))
    else:
        model = _torchscript(_file(spec, "--model"))
    if weights is not None:
        load_weights(model, weights)
    if kind == "export":
        model = ExportedModule(model)
    if normalization is not None:
        model = nn.Sequential(Normalize(*normalization), model)
    return model.to(chosen).eval()


def identity(spec: str, *, weights: str | Path | None = None, model_args: Mapping[str, Any] | str | None = None,
             num_classes: int | None = None, mean: float | Sequence[float] | None = None,
             std: float | Sequence[float] | None = None) -> dict[str, Any]:
    """What :func:`load` with these arguments evaluates, JSON-able, for reports and provenance: the spec, its
    kind, sha256 of every file it reads (the .py, the archive, the weights), model_args, num_classes, mean, std,
    and the version of the library that builds torchvision/timm models."""
    kind = kind_of(spec)
    normalization = _normalization(mean, std)
    described: dict[str, Any] = {
        "spec": spec, "kind": kind, "model_args": parse_model_args(model_args), "num_classes": num_classes,
        "mean": normalization[0] if normalization else None, "std": normalization[1] if normalization else None,
        "files": {},
    }
    files: dict[str, str] = described["files"]
    if kind == "zoo":
        files[f"{spec}.pt"] = list_models()[spec]["sha256"]
    elif kind == "python":
        file = spec.rpartition(":")[0] if ".py:" in spec else spec
        files[file] = sha256_file(_file(file, "--model"))
    elif kind in ("torchscript", "export"):
        files[spec] = sha256_file(_file(spec, "--model"))
    else:
        try:
            described["library_version"] = importlib.metadata.version(kind)
        except importlib.metadata.PackageNotFoundError:
            described["library_version"] = None
    if weights is not None:
        files[str(weights)] = sha256_file(_file(str(weights), "--weights"))
    return described
