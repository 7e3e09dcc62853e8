"""The option vocabulary every subcommand shares, and the one table of which options apply when.

The same concept has the same option everywhere (docs/cli.md): ``--model`` (several: comma list or repeated),
``--data``, ``--n``, ``--batch-size``, ``--device``, ``--seed``, ``--out``, ``--no-progress``, ``--steps``,
``--eps`` (always a list), ``--distance``, ``--targeted``, ``--levels``. An option given where it has no effect
(``RULES``) is an error naming both options, checked once for every subcommand by :func:`check_applicable`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgewise.cli import csv, folder
from edgewise.data import ImageDataset, select
from edgewise.data import load as load_dataset
from edgewise.eval.provenance import check_record, edgewise_identity, fingerprint_model, fingerprint_tensor
from edgewise.models import identity as model_identity
from edgewise.models import list_models
from edgewise.models import load as load_model_spec


@dataclass(frozen=True)
class Rule:
    """``option`` has an effect only when ``applies(args)``, which depends on the value of ``depends``."""

    option: str
    depends: str
    applies: Callable[[argparse.Namespace], bool]
    when: str


def dest(flag: str) -> str:
    """argparse's attribute name of ``--flag-name``."""
    return flag.lstrip("-").replace("-", "_")


RULES: tuple[Rule, ...] = (
    Rule("--group-size", "--kind", lambda a: a.kind == "universal", "with --kind universal"),
    Rule("--transforms", "--kind", lambda a: a.kind == "transform", "with --kind transform"),
    Rule("--random", "--kind", lambda a: a.kind == "transform", "with --kind transform"),
    Rule("--exact-time-limit", "--exact", lambda a: a.exact, "with --exact"),
)


def check_applicable(args: argparse.Namespace, rules: tuple[Rule, ...] = RULES) -> None:
    """Refuse an explicitly given option that has no effect with the other options' values."""
    given = set(getattr(args, "given", ()))
    for rule in rules:
        if dest(rule.option) in given and hasattr(args, dest(rule.depends)) and not rule.applies(args):
            value = getattr(args, dest(rule.depends))
            shown = "(not given)" if value is None or value is False else \
                ",".join(map(str, value)) if isinstance(value, list) else str(value)
            raise ValueError(f"{rule.option} has no effect with {rule.depends} {shown}; it applies only {rule.when}")


MODEL_SPEC = ("a zoo name (see `edgewise models`), path/file.py:NAME, a TorchScript archive, a torch.export "
              ".pt2, torchvision:NAME or timm:NAME")
DATA_SPEC = ("sample (the shipped 1,000 Fashion-MNIST test images), fmnist-test, an ImageFolder directory, an .npz "
             "with x and y, a folder of CIFAR-10/100 python batches, or a folder of IDX files")
PER_MODEL = ("weights", "model_args", "num_classes", "mean", "std")


def add_models(parser: argparse.ArgumentParser, *, default: list[str], several: bool, help: str) -> None:
    """``--model`` (one, or with ``several`` a comma list that may also be repeated) and how to build it:
    ``--weights``, ``--model-args``, ``--num-classes``, ``--mean``, ``--std`` (with several models: given once
    for all of them, or once per model in --model's order)."""
    each = "; with several --model: once for all, or once per model in order" if several else ""
    if several:
        parser.add_argument("--model", type=csv(str), action="extend", default=None,
                            help=f"{help}: {MODEL_SPEC}; a comma list or repeated (default: {','.join(default)})")
        parser.set_defaults(model_default=default)
    else:
        parser.add_argument("--model", default=default[0], help=f"{help}: {MODEL_SPEC}")
    parser.add_argument("--weights", action="append", default=None,
                        help="state dict or checkpoint (torch.save) loaded strictly into --model (not for zoo "
                             f"names; default: none){each}")
    parser.add_argument("--model-args", action="append", default=None,
                        help=f"JSON object of keyword arguments for file.py:NAME, torchvision: or timm: (default: "
                             f"none){each}")
    parser.add_argument("--num-classes", type=int, action="append", default=None,
                        help=f"number of outputs of a file.py:NAME, torchvision: or timm: model (default: the "
                             f"builder's){each}")
    parser.add_argument("--mean", type=csv(float), action="append", default=None,
                        help="per-channel mean of the normalization put in front of --model, comma list as "
                             f"torchvision's Normalize (attacks still see inputs in [0, 1]; default: none){each}")
    parser.add_argument("--std", type=csv(float), action="append", default=None,
                        help=f"per-channel standard deviation of that normalization (default: none){each}")


def models_of(args: argparse.Namespace) -> list[str]:
    """The models of a command that takes several (``--model A,B --model C``), or its default."""
    chosen = args.model if args.model is not None else args.model_default
    if not chosen:
        raise ValueError("--model must name at least one model")
    return list(chosen)


def model_options(args: argparse.Namespace, count: int) -> list[dict[str, Any]]:
    """The keyword arguments of ``edgewise.models.load`` for each of ``count`` models: an option given once applies
    to all, given ``count`` times one per model, otherwise it is an error."""
    per_model: list[dict[str, Any]] = [{} for _ in range(count)]
    for name in PER_MODEL:
        values = getattr(args, name)
        if values is None:
            values = [None] * count
        elif len(values) == 1:
            values = values * count
        elif len(values) != count:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is given {len(values)} times for {count} --model(s): give it once (for all) "
                             "or once per model")
        for options, value in zip(per_model, values, strict=True):
            options[name] = value
    return per_model


def load_models(specs: list[str], args: argparse.Namespace, *,
                device: torch.device) -> tuple[list[nn.Module], list[dict[str, Any]]]:
    """Load each model spec with its options (``model_options``); returns the models (eval mode, on ``device``)
    and their identities (``edgewise.models.identity`` plus the sha256 of the loaded state dict)."""
    models, identities = [], []
    for spec, options in zip(specs, model_options(args, len(specs)), strict=True):
        model = load_model_spec(spec, device=device, **options)
        models.append(model)
        identities.append({**model_identity(spec, **options), "sha256": fingerprint_model(model)})
    return models, identities


def safe_name(spec: str) -> str:
    """A model or data spec as one folder name: its file name (a spec may be a path), other characters as _."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(spec).name or spec)


def model_folders(names: list[str]) -> list[str]:
    """One folder name (``safe_name``) per model whose results are kept apart under --out; two models whose names
    give the same folder (``a/net.py:build`` and ``b/net.py:build``) are refused, as the second would be handed
    the first's finished work."""
    folders = [safe_name(name) for name in names]
    if len(set(folders)) != len(folders):
        raise ValueError(f"--model: {names} give the same folder name twice ({folders}); give each model once, "
                         "or copy one model's file under another name")
    return folders


def add_data(parser: argparse.ArgumentParser, *, n: int | None = None, torchrun: bool = False) -> None:
    """``--data`` with ``--split``, ``--resize``, ``--center-crop``, and the samples ``--n`` (default ``n``, None:
    all) / ``--offset`` / ``--indices``; ``torchrun``: the command shards under torchrun (its help says how)."""
    parser.add_argument("--data", default="sample", help=f"the data: {DATA_SPEC}")
    parser.add_argument("--split", default=None, choices=("train", "test"),
                        help="the split of a CIFAR or IDX folder (default: test)")
    parser.add_argument("--resize", type=csv(int), default=None,
                        help="resize each image: the shorter side, or HEIGHT,WIDTH (default: none)")
    parser.add_argument("--center-crop", type=csv(int), default=None,
                        help="center-crop each image (after --resize): SIZE or HEIGHT,WIDTH (default: none)")
    under = "; under torchrun write --samples (torchrun reads --n as an abbreviation of its own options)"
    parser.add_argument("--n", "--samples", dest="n", type=int, default=n,
                        help="number of samples, from --offset on in the data's order (default: "
                             f"{'all' if n is None else n}){under if torchrun else ''}")
    parser.add_argument("--offset", type=int, default=0, help="dataset index of the first sample")
    parser.add_argument("--indices", type=csv(int), default=None,
                        help="comma list of dataset indices to evaluate, in this order, instead of --n/--offset "
                             "(default: none)")


def _size(values: list[int] | None) -> int | tuple[int, int] | None:
    if values is None:
        return None
    return values[0] if len(values) == 1 else (values[0], values[1]) if len(values) == 2 else tuple(values)  # type: ignore[return-value]


def load_data(args: argparse.Namespace) -> tuple[ImageDataset, torch.Tensor]:
    """The dataset of ``--data`` (with --split, --resize, --center-crop) and the dataset indices chosen by
    ``--n`` / ``--offset`` / ``--indices``."""
    dataset = load_dataset(args.data, split=args.split, resize=_size(args.resize),
                           center_crop=_size(args.center_crop))
    # A command's own default --n (exact: 10) gives way to --indices; an explicit --n with --indices is refused.
    n = None if args.indices is not None and "n" not in getattr(args, "given", ()) else args.n
    return dataset, select(dataset, n=n, offset=args.offset, indices=args.indices)


class RepeatedChannels(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """A gray dataset seen with ``channels`` channels (each image repeated), for zoo models trained on gray images
    repeated to 3 channels (``smallcnn-rgb-fmnist``): the attack then perturbs each channel."""

    def __init__(self, dataset: ImageDataset, channels: int) -> None:
        self.dataset, self.channels = dataset, channels
        self.spec, self.classes, self.num_classes = dataset.spec, dataset.classes, dataset.num_classes
        self.shape = (channels, *dataset.shape[1:])
        self.identity = {**dataset.identity, "shape": list(self.shape), "repeated_channels": channels}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return image.expand(self.channels, -1, -1), label


def targets_of(dataset: ImageDataset, indices: torch.Tensor, classes: int) -> torch.Tensor:
    """The targets of ``--targeted`` for the samples ``indices``: (y + 1) mod ``classes`` (the labels are read
    without decoding the images)."""
    labels = torch.tensor([dataset.label(index) for index in indices.tolist()], dtype=torch.long)
    return (labels + 1) % classes


def for_model(dataset: ImageDataset, spec: str) -> Any:
    """``dataset`` as the model ``spec`` takes it: gray images repeated to a zoo model's input channels."""
    meta = list_models().get(spec)
    channels = int(meta["in_channels"]) if meta is not None else dataset.shape[0]
    return RepeatedChannels(dataset, channels) if dataset.shape[0] == 1 < channels else dataset


def data_identity(dataset: Any, indices: torch.Tensor) -> dict[str, Any]:
    """What was evaluated: the dataset's identity (spec, split, sizes, sha256 of its files) and the samples."""
    return {**dataset.identity, "n": len(indices), "indices_sha256": fingerprint_tensor(indices)}


def add_run(parser: argparse.ArgumentParser, *, out: str, batch_size: int = 256, torchrun: bool = False) -> None:
    """``--batch-size``, ``--seed``, ``--device``, ``--out``, ``--no-progress``; ``torchrun``: as in ``add_data``."""
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help="samples per batch (also the unit of resume: a finished batch is kept under --out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks' random draws (per batch)")
    under = "; under torchrun each process takes cuda:LOCAL_RANK"
    parser.add_argument("--device", default="cpu", help=f"cpu, cuda or cuda:N{under if torchrun else ''}")
    parser.add_argument("--out", type=folder, default=None, help=f"output folder (default: {out})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_positive(name: str, value: int | None) -> None:
    """An integer option that must be >= 1 (None: not given, its default applies)."""
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_seconds(name: str, value: float) -> None:
    """A time limit in seconds: finite and > 0 (the solver refuses anything else, but only after the attacks)."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value}")


def check_eps(values: list[Any] | None, *, strict: bool = False) -> None:
    """``--eps``: a list of budgets, each >= 0 (``strict``: > 0)."""
    if values is not None and (not values or any(not (e > 0 if strict else e >= 0) for e in values)):
        raise ValueError(f"--eps must be a comma list of numbers {'>' if strict else '>='} 0, got {values}")


def model_line(model: dict[str, Any]) -> str:
    """One printed line saying which model was evaluated (from its identity record)."""
    files = ", ".join(f"{name} sha256 {digest[:12]}" for name, digest in model["files"].items())
    zoo = list_models().get(model["spec"], {})
    normalization = (f"mean {model['mean']} std {model['std']}" if model["mean"] is not None else
                     f"inside the zoo model, mean {zoo['mean']} std {zoo['std']}" if "mean" in zoo else "none")
    classes = f"; {model['outputs']} classes" if "outputs" in model else ""
    return (f"model   {model['spec']} ({model['kind']}{', ' + files if files else ''}; state sha256 "
            f"{model['sha256'][:12]}{classes}; normalization {normalization})")


def data_line(data: dict[str, Any]) -> str:
    """One printed line saying which data was evaluated (from :func:`data_identity`); the split only for data that
    has splits (CIFAR and IDX folders), not the shipped sample, an .npz or an ImageFolder."""
    split = f"split {data['split']}, " if data["split"] is not None else ""
    return (f"data    {data['spec']} ({split}input {'x'.join(map(str, data['shape']))}, "
            f"{data['num_classes']} classes, files sha256 {data['sha256'][:12]}; n={data['n']} of "
            f"{data['num_samples']}, indices sha256 {data['indices_sha256'][:12]})")


def evaluated(models: list[dict[str, Any]], data: dict[str, Any]) -> str:
    """The printed lines saying which models (their identity records) and data were evaluated."""
    return "\n".join([*map(model_line, models), data_line(data)])


def claim_out(out: Path, command: str, record: dict[str, Any]) -> dict[str, Any]:
    """Make ``out`` this run's folder: refuse a folder written by another command or by a run whose ``record``
    (what produced its finished work: model, data, attack and options) differs, in one line naming the first
    differing key; a non-empty folder without edgewise's ``run.json`` is refused too. Returns the full record."""
    path = out / "run.json"
    if not path.is_file() and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty and was not written by edgewise (no run.json): use a new or "
                         "empty folder")
    full = {"command": command, "edgewise": edgewise_identity(), **record}
    check_record(path, full, label=f"--out {out}")
    return full


def refuse_claimed(out: Path, command: str) -> None:
    """Refuse an ``out`` that another command claimed (its ``run.json``, written by :func:`claim_out`), for a
    command that keeps the record of its work elsewhere (train: in its checkpoint), in claim_out's words."""
    path = out / "run.json"
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            found = None
        other = found.get("command") if isinstance(found, dict) else None
        raise ValueError(f"--out {out} was written by a run with command={other!r}, this run has "
                         f"command={command!r}: use another folder or delete it")


def remove_outputs(out: Path, names: tuple[str, ...], patterns: tuple[str, ...] = ()) -> None:
    """Delete a previous run's report files (``names`` and glob ``patterns``), so that none is left beside this
    run's results."""
    for name in names:
        (out / name).unlink(missing_ok=True)
    for pattern in patterns:
        for path in out.glob(pattern):
            path.unlink()
