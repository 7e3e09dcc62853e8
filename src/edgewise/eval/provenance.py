"""What produced a result on disk: digests of models and tensors, JSON-able descriptions of attacks, and the
check that refuses to reuse work of another run.

Every finished batch (:func:`edgewise.eval.run_attack` with ``resume_dir``) and every results folder records
what produced it; a later run that finds a record differing from its own on any key that matters refuses with
one line naming the key and both values, instead of handing back the old run's figures.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import json
import math
import os
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgewise import __version__

_DEPTH = 4
"""How deep :func:`describe_attack` follows bound values (deeper ones are described by type only, so a
container holding itself cannot recurse)."""


DIAGNOSTIC = frozenset({"callback"})
"""Keywords that only observe an attack (DESIGN.md: diagnostics go through ``callback``; they never change what it
returns): left out of its description, so that tracing a resumed run reuses its finished work."""


def _update(digest: Any, tensor: torch.Tensor) -> None:
    digest.update(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel():
        digest.update(flat.view(torch.uint8).numpy())  # the buffer itself: no copy of a batch per digest


def fingerprint_tensor(tensor: torch.Tensor) -> str:
    """sha256 (hex) over a tensor's dtype, shape and bytes: equal exactly when the tensors are equal bit for bit
    (wherever they live)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    digest = hashlib.sha256()
    _update(digest, tensor)
    return digest.hexdigest()


def fingerprint_model(model: nn.Module) -> str:
    """sha256 (hex) over a model's class and its ``state_dict`` (names, dtypes, shapes, bytes), so any change of a
    weight or buffer changes it. TorchScript and ``torch.export`` modules have a state dict too."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    digest = hashlib.sha256()
    digest.update(_qualified(type(model)).encode())
    for name, value in model.state_dict().items():
        digest.update(f"|{name}|".encode())
        if isinstance(value, torch.Tensor):
            _update(digest, value)
        else:  # extra state (get_extra_state) may be any object: its description stands for it
            digest.update(json.dumps(_describe(value, 0), sort_keys=True).encode())
    return digest.hexdigest()


def _qualified(thing: Any) -> str:
    module = getattr(thing, "__module__", None) or ""
    name = getattr(thing, "__qualname__", None) or getattr(thing, "__name__", None) or type(thing).__qualname__
    return f"{module}.{name}" if module else str(name)


def _function(function: Callable[..., Any], depth: int) -> dict[str, Any]:
    description: dict[str, Any] = {"func": _qualified(function)}
    name = getattr(function, "__name__", None)
    if name is not None and not str(description["func"]).endswith(f".{name}"):
        description["name"] = name  # a closure renamed after what it runs (e.g. a baseline adapter)
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        parameters = []
    defaults = {p.name: _describe(p.default, depth + 1) for p in parameters
                if p.default is not p.empty and p.name not in DIAGNOSTIC}
    if defaults:
        description["defaults"] = defaults
    return description


def _describe(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # nan != nan would never match itself
    if isinstance(value, enum.Enum):
        return _qualified(type(value)) + "." + value.name
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if isinstance(value, torch.Tensor):
        return {"tensor": fingerprint_tensor(value), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, nn.Module):
        return {"module": _qualified(type(value)), "fingerprint": fingerprint_model(value)}
    if isinstance(value, types.ModuleType):
        return {"python_module": value.__name__}
    if depth >= _DEPTH:
        return {"type": _qualified(type(value))}
    if isinstance(value, Mapping):
        return {str(k): _describe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_describe(v, depth + 1) for v in value]
    if isinstance(value, functools.partial):
        return {"partial": _function(value.func, depth + 1),
                "args": [_describe(v, depth + 1) for v in value.args],
                "keywords": {k: _describe(v, depth + 1) for k, v in value.keywords.items() if k not in DIAGNOSTIC}}
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType | types.MethodType | type):
        return _function(value, depth)
    # Any other object (a callback, a distance factory instance): its class; never its repr, which may hold a
    # memory address that differs from run to run.
    return {"type": _qualified(type(value))}


def tree_digest(root: Path) -> str:
    """sha256 over the ``.py`` files below ``root``: their paths relative to it and their bytes."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(f"{path.relative_to(root).as_posix()}|{path.stat().st_size}|".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def source_digest() -> str:
    """:func:`tree_digest` of the edgewise package that runs."""
    return tree_digest(Path(__file__).resolve().parents[1])


def edgewise_identity() -> dict[str, str]:
    """The version and the source digest of edgewise, for the records of finished work: the version alone does not
    change between releases (a development checkout, an edited install), and an attack's description names its
    function, not its code, so work finished by other code is another run's."""
    return {"version": __version__, "source": source_digest()}


def describe_value(value: Any) -> Any:
    """A JSON-able identity of a bound value, as :func:`describe_attack` describes an attack's options."""
    return _describe(value, 0)


def describe_attack(attack: Callable[..., Any]) -> dict[str, Any]:
    """A JSON-able identity of an attack: module + qualname of the function with its keyword defaults, and for a
    :func:`functools.partial` every bound argument (callables by qualname, tensors and modules by digest) but
    the diagnostic ``callback``.

    What a closure captured and a callable object's attributes are not described (they are often state that
    changes from call to call, such as a counter): bind options with ``functools.partial`` to have them checked.

    Two attacks with equal descriptions compute the same thing unless their code changed; any bound option that
    differs (``steps``, ``distance``, a tensor's values) makes the descriptions differ.
    """
    if not callable(attack):
        raise TypeError(f"attack must be callable, got {type(attack).__name__}")
    described = _describe(attack, 0)
    return described if isinstance(described, dict) else {"callable": described}


def _first_difference(old: Any, new: Any, key: str) -> tuple[str, Any, Any] | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for name in [*new, *(k for k in old if k not in new)]:
            found = _first_difference(old.get(name), new.get(name), f"{key}.{name}" if key else str(name))
            if found is not None:
                return found
        return None
    return None if old == new else (key, old, new)


def differing(found: Any, expected: Mapping[str, Any], *, ignore: Iterable[str] = ()) -> str | None:
    """None when record ``found`` equals ``expected`` on every key not in ``ignore`` (nested keys leaf by leaf);
    else ``"KEY=OLD, this run has KEY=NEW"`` for the first differing key (dotted when nested)."""
    skipped = set(ignore)
    wanted = {k: v for k, v in json.loads(json.dumps(dict(expected))).items() if k not in skipped}
    if not isinstance(found, dict):
        return f"record={found!r}, this run has record={wanted!r}"
    difference = _first_difference({k: v for k, v in found.items() if k not in skipped}, wanted, "")
    if difference is None:
        return None
    key, old, new = difference
    return f"{key}={old!r}, this run has {key}={new!r}"


def write_json_atomic(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` as JSON to ``path`` (write to a file of this process, then rename: a reader never sees half
    a file, and processes writing the same record at once do not clash)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, path)


def check_record(path: Path, expected: Mapping[str, Any], *, ignore: Iterable[str] = (),
                 label: str | None = None) -> None:
    """Refuse to reuse ``path``'s folder for another run; otherwise record ``expected`` there (atomically).

    When ``path`` holds a record that differs from ``expected`` on a key not in ``ignore`` (nested keys are
    compared leaf by leaf), raise ``ValueError`` in one line naming the first differing key with both values.
    ``label`` names the folder in that message (default: ``path``'s folder).
    """
    path = Path(path)
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{label or path.parent} holds an unreadable record {path} ({error}); delete it or "
                             "use another folder") from error
        difference = differing(found, expected, ignore=ignore)
        if difference is not None:
            raise ValueError(f"{label or path.parent} was written by a run with {difference}: use another folder "
                             "or delete it")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, json.loads(json.dumps(dict(expected))))
