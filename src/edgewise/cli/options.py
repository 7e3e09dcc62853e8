"""The option vocabulary every subcommand shares, and the one table of which options apply when.

The same concept has the same option everywhere (docs/cli.md): ``--model`` (several: comma list or repeated),
``--data``, ``--n``, ``--batch-size``, ``--device``, ``--seed``, ``--out``, ``--no-progress``, ``--steps``,
``--eps`` (always a list), ``--distance``, ``--targeted``, ``--levels``. An option given where it has no effect
(``RULES``) is an error naming both options, checked once for every subcommand by :func:`check_applicable`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgewise import __version__
from edgewise.cli import csv
from edgewise.data import fashion_mnist, sample
from edgewise.eval.provenance import check_record


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
    Rule("--data-root", "--data", lambda a: a.data == "fmnist-test", "with --data fmnist-test"),
    Rule("--n", "--indices", lambda a: a.indices is None, "without --indices (which names the samples itself)"),
    Rule("--group-size", "--kind", lambda a: a.kind == "universal", "with --kind universal"),
    Rule("--transforms", "--kind", lambda a: a.kind == "transform", "with --kind transform"),
    Rule("--random", "--kind", lambda a: a.kind == "transform", "with --kind transform"),
)


def check_applicable(args: argparse.Namespace, rules: tuple[Rule, ...] = RULES) -> None:
    """Refuse an explicitly given option that has no effect with the other options' values."""
    given = set(getattr(args, "given", ()))
    for rule in rules:
        if dest(rule.option) in given and hasattr(args, dest(rule.depends)) and not rule.applies(args):
            value = getattr(args, dest(rule.depends))
            shown = "(not given)" if value is None else ",".join(map(str, value)) if isinstance(value, list) \
                else str(value)
            raise ValueError(f"{rule.option} has no effect with {rule.depends} {shown}; it applies only {rule.when}")


def add_models(parser: argparse.ArgumentParser, *, default: list[str], several: bool, help: str) -> None:
    """``--model``: one model, or (``several``) a comma list that may also be repeated."""
    if several:
        parser.add_argument("--model", type=csv(str), action="extend", default=None,
                            help=f"{help}; a comma list or repeated (default: {','.join(default)})")
        parser.set_defaults(model_default=default)
    else:
        parser.add_argument("--model", default=default[0], help=help)


def models_of(args: argparse.Namespace) -> list[str]:
    """The models of a command that takes several (``--model A,B --model C``), or its default."""
    chosen = args.model if args.model is not None else args.model_default
    if not chosen:
        raise ValueError("--model must name at least one model")
    return list(chosen)


def add_data(parser: argparse.ArgumentParser, *, n: int | None = 1000) -> None:
    """``--data``, ``--data-root``, and the sample choice ``--n`` / ``--offset`` / ``--indices``."""
    parser.add_argument("--data", default="sample", choices=("sample", "fmnist-test"),
                        help="the shipped 1,000-image Fashion-MNIST sample, or the full Fashion-MNIST test set")
    parser.add_argument("--data-root", default=None,
                        help="folder with the Fashion-MNIST IDX files (default: Debian's dataset-fashion-mnist)")
    parser.add_argument("--n", "--samples", dest="n", type=int, default=n,
                        help="number of samples, from --offset on; under torchrun write "
                             "--samples (torchrun reads --n as an abbreviation of its own options)")
    parser.add_argument("--offset", type=int, default=0, help="index of the first sample")
    parser.add_argument("--indices", type=csv(int), default=None,
                        help="comma list of dataset indices to evaluate, in this order (instead of --n/--offset)")


def select(count: int, *, n: int | None, offset: int, indices: list[int] | None) -> torch.Tensor:
    """Dataset indices: ``indices`` in their order, or ``n`` samples from ``offset`` on (all of the rest: None)."""
    if indices is not None:
        if not indices or any(not 0 <= i < count for i in indices) or len(set(indices)) != len(indices):
            raise ValueError(f"--indices must be distinct indices in [0, {count - 1}], got {indices}")
        return torch.tensor(indices, dtype=torch.long)
    if not 0 <= offset < count:
        raise ValueError(f"--offset must be in [0, {count - 1}], got {offset}")
    n = count - offset if n is None else n
    if not 1 <= n <= count - offset:
        raise ValueError(f"--n must be in [1, {count - offset}] for --offset {offset} of {count} samples, got {n}")
    return torch.arange(offset, offset + n)


def load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chosen samples of ``--data``: (inputs, labels, dataset indices)."""
    inputs, labels = sample() if args.data == "sample" else fashion_mnist("test", args.data_root)
    chosen = select(len(inputs), n=args.n, offset=args.offset, indices=args.indices)
    return inputs[chosen], labels[chosen], chosen


def add_run(parser: argparse.ArgumentParser, *, out: str, batch_size: int = 256) -> None:
    """``--batch-size``, ``--seed``, ``--device``, ``--out``, ``--no-progress``."""
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help="samples per batch (also the unit of resume: a finished batch is kept under --out)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks' random draws (per batch)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N; under torchrun each process takes "
                        "cuda:LOCAL_RANK")
    parser.add_argument("--out", default=None, help=f"output folder (default: {out})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_positive(name: str, value: int | None) -> None:
    """An integer option that must be >= 1 (None: not given, its default applies)."""
    if value is not None and value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def check_eps(values: list[Any] | None, *, strict: bool = False) -> None:
    """``--eps``: a list of budgets, each >= 0 (``strict``: > 0)."""
    if values is not None and (not values or any(not (e > 0 if strict else e >= 0) for e in values)):
        raise ValueError(f"--eps must be a comma list of numbers {'>' if strict else '>='} 0, got {values}")


def claim_out(out: Path, command: str, record: dict[str, Any]) -> dict[str, Any]:
    """Make ``out`` this run's folder: refuse a folder written by another command or by a run whose ``record``
    (what produced its finished work: model, data, attack and options) differs, in one line naming the first
    differing key; a non-empty folder without edgewise's ``run.json`` is refused too. Returns the full record."""
    path = out / "run.json"
    if not path.is_file() and out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty and was not written by edgewise (no run.json): use a new or "
                         "empty folder")
    full = {"command": command, "edgewise": __version__, **record}
    check_record(path, full, label=f"--out {out}")
    return full


def remove_outputs(out: Path, names: tuple[str, ...], patterns: tuple[str, ...] = ()) -> None:
    """Delete a previous run's report files (``names`` and glob ``patterns``), so that none is left beside this
    run's results."""
    for name in names:
        (out / name).unlink(missing_ok=True)
    for pattern in patterns:
        for path in out.glob(pattern):
            path.unlink()
