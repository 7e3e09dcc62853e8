"""``edgewise minmax``: average vs min-max (APGDA) attacks over models, inputs or transformations.

Runs both strategies with the same budget on the shipped sample (or the full test set), prints the comparison
the way Tables 1 / A3-A5 of the min-max supplement do (accuracy per domain under attack, ASR_all / ASR_gp,
ASR_avg, Lift), and writes ``results.json``, ``samples.jsonl`` and ``weights.png`` (the learned w) under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from edgewise.attacks.minmax import (
    MinMaxResult,
    asr_all,
    asr_avg,
    ensemble_attack,
    lift,
    plot_weights,
    transform_attack,
    universal_attack,
)
from edgewise.attacks.minmax.metrics import accuracy
from edgewise.cli import csv
from edgewise.data import fashion_mnist, sample
from edgewise.eval.report import environment, write_text_atomic
from edgewise.models import load_model

ZOO = {"A": "mlp-fmnist", "B": "allcnn-fmnist", "C": "lenet-fmnist", "D": "lenetv2-fmnist"}
"""Models A-D of Table A1 (min-max supplement), trained on Fashion-MNIST by ``edgewise train``."""

KINDS = ("ensemble", "universal", "transform")
STRATEGIES = ("average", "minmax")
TRANSFORM_NAMES = ("identity", "hflip", "vflip", "brightness", "gamma", "crop", "rotation")
Attack = Callable[..., MinMaxResult]


def register(commands: Any) -> None:
    parser = commands.add_parser("minmax", help="average vs min-max attacks over models, inputs or transforms")
    parser.add_argument("--kind", default="ensemble", choices=KINDS)
    parser.add_argument("--models", type=csv(str), default=["A", "B", "C", "D"],
                        help="A-D (Table A1) or zoo names; ensemble: the ensemble, otherwise one run per model")
    parser.add_argument("--norm", default="linf", choices=("l0", "l1", "l2", "linf"))
    parser.add_argument("--eps", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=None, help="default: 50 (ensemble) or 20 (D.2)")
    parser.add_argument("--step-size", type=float, default=None,
                        help="α as a fraction of ε (default: D.2; transform linf: Tables A4/A5)")
    parser.add_argument("--weight-step", type=float, default=None, help="β (default: as --step-size)")
    parser.add_argument("--gamma", type=float, default=None, help="γ (default: as --step-size)")
    parser.add_argument("--group-size", type=int, default=5, help="universal: images sharing one perturbation")
    parser.add_argument("--transforms", type=csv(str), default=list(TRANSFORM_NAMES))
    parser.add_argument("--random", action="store_true", help="transform: random transformations (Table A4)")
    parser.add_argument("--data", default="sample", choices=("sample", "fmnist-test"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--n", type=int, default=1000, help="number of samples (the first n)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output folder (default results/minmax-KIND-NORM)")
    parser.set_defaults(run=run)


def model_name(key: str) -> str:
    """A-D -> the zoo name of Table A1's model; other names pass through."""
    return ZOO.get(key, key)


def _concatenate(parts: Sequence[MinMaxResult]) -> MinMaxResult:
    return MinMaxResult(adv=torch.cat([p.adv for p in parts]), weights=torch.cat([p.weights for p in parts]),
                        history=torch.cat([p.history for p in parts], 1),
                        fooled=torch.cat([p.fooled for p in parts]),
                        clean_fooled=torch.cat([p.clean_fooled for p in parts]))


def run_batched(attack: Attack, target: Any, inputs: torch.Tensor, labels: torch.Tensor, *,
                batch_size: int) -> MinMaxResult:
    """``attack(target, x, y)`` over consecutive batches, results concatenated in order."""
    parts = [attack(target, inputs[i : i + batch_size], labels[i : i + batch_size])
             for i in range(0, inputs.shape[0], batch_size)]
    return _concatenate(parts)


def summarize(results: dict[str, MinMaxResult], domains: Sequence[str]) -> dict[str, Any]:
    """Accuracy per domain, ASR_all (= ASR_gp), ASR_avg, mean weights, and Lift of min-max over average."""
    rows: dict[str, Any] = {}
    for strategy, result in results.items():
        rows[strategy] = {
            "accuracy": dict(zip(domains, accuracy(result.fooled).tolist(), strict=True)),
            "asr_all": asr_all(result.fooled, result.clean_fooled),
            "asr_avg": asr_avg(result.fooled, result.clean_fooled),
            "mean_weights": dict(zip(domains, result.weights.double().mean(0).tolist(), strict=True)),
            "groups_correct_when_clean": int((~result.clean_fooled.any(1)).sum()),
        }
    if set(results) == set(STRATEGIES):
        rows["minmax"]["lift"] = lift(rows["minmax"]["asr_all"], rows["average"]["asr_all"])
    return rows


def compare(kind: str, targets: dict[str, Any], inputs: torch.Tensor, labels: torch.Tensor, *, norm: str,
            eps: float, steps: int | None = None, batch_size: int = 250, options: dict[str, Any] | None = None,
            seed: int = 0) -> tuple[dict[str, Any], dict[str, MinMaxResult], list[str]]:
    """Average and min-max attacks of one ``kind`` on ``targets`` (name -> model).

    Returns (summary, results by strategy, domain names). ``ensemble``: the ensemble of all targets;
    ``universal`` / ``transform``: exactly one target. ``options``: extra keyword arguments of the attack.
    """
    options = dict(options or {})
    if steps is not None:
        options["steps"] = steps
    if kind == "ensemble":
        attack: Attack = ensemble_attack
        target: Any = list(targets.values())
        domains = list(targets)
    else:
        if len(targets) != 1:
            raise ValueError(f"--kind {kind} attacks one model at a time, got {len(targets)}")
        target = next(iter(targets.values()))
        if kind == "universal":
            attack = universal_attack
            size = int(options.get("group_size", 5))
            domains = [f"image {i + 1}" for i in range(size)]
            batch_size = max(size, batch_size // size * size)
        else:
            attack = transform_attack
            domains = list(options.get("transforms", TRANSFORM_NAMES))
    results, seconds = {}, {}
    for strategy in STRATEGIES:
        extra = dict(options)
        if kind == "transform" and extra.get("random"):
            extra["generator"] = torch.Generator().manual_seed(seed)
        bound = partial(attack, norm=norm, eps=eps, strategy=strategy, **extra)
        start = time.perf_counter()
        results[strategy] = run_batched(bound, target, inputs, labels, batch_size=batch_size)
        seconds[strategy] = time.perf_counter() - start
    summary = summarize(results, domains)
    for strategy in STRATEGIES:
        summary[strategy]["seconds"] = seconds[strategy]
    return summary, results, domains


def format_table(title: str, summary: dict[str, Any], domains: Sequence[str], *, kind: str) -> str:
    """The comparison as a markdown table: Acc per domain (%), ASR_all or ASR_gp, ASR_avg, Lift."""
    group = "ASR_all" if kind == "ensemble" else "ASR_gp"
    header = ["strategy", *[f"Acc {d}" for d in domains], group, "ASR_avg", "Lift"]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for strategy in STRATEGIES:
        row = summary[strategy]
        cells = [strategy, *[f"{100 * row['accuracy'][d]:.2f}" for d in domains], f"{100 * row['asr_all']:.2f}",
                 f"{100 * row['asr_avg']:.2f}", f"{100 * row['lift']:+.2f}%" if row.get("lift") is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    if args.data == "sample":
        inputs, labels = sample()
    else:
        inputs, labels = fashion_mnist("test", args.data_root)
    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    return inputs[: args.n], labels[: args.n]


def run(args: argparse.Namespace) -> int:
    names = [model_name(key) for key in args.models]
    if not names:
        raise ValueError("--models must name at least one model")
    inputs, labels = _load_data(args)
    options: dict[str, Any] = {"step_size": args.step_size, "weight_step": args.weight_step, "gamma": args.gamma}
    if args.kind == "universal":
        options["group_size"] = args.group_size
        usable = inputs.shape[0] // args.group_size * args.group_size
        inputs, labels = inputs[:usable], labels[:usable]
    if args.kind == "transform":
        options.update(transforms=list(args.transforms), random=args.random)
    out = Path(args.out or f"results/minmax-{args.kind}-{args.norm}")
    out.mkdir(parents=True, exist_ok=True)
    runs = [list(args.models)] if args.kind == "ensemble" else [[key] for key in args.models]
    report: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    plots: list[tuple[str, MinMaxResult]] = []
    for keys in runs:
        targets = {key: load_model(model_name(key)) for key in keys}
        summary, results, domains = compare(args.kind, targets, inputs, labels, norm=args.norm, eps=args.eps,
                                            steps=args.steps, batch_size=args.batch_size, options=options,
                                            seed=args.seed)
        label = ",".join(targets)
        title = f"{args.kind} {args.norm} eps={args.eps:g} on {label} (n={inputs.shape[0]})"
        print(format_table(title, summary, domains, kind=args.kind) + "\n", flush=True)
        report[label] = {"domains": domains, **summary}
        plots.extend((f"{label} {s}" if len(runs) > 1 else s, results[s]) for s in STRATEGIES)
        for strategy, result in results.items():
            for g in range(result.weights.shape[0]):
                records.append({"models": label, "strategy": strategy, "group": g,
                                "weights": result.weights[g].tolist(), "fooled": result.fooled[g].tolist(),
                                "clean_fooled": result.clean_fooled[g].tolist()})
    plot_weights([p for p in plots if p[0].endswith("minmax")], domains, out / "weights.png",
                 title=f"learned domain weights w: {args.kind} {args.norm} eps={args.eps:g}")
    arguments = {k: v for k, v in vars(args).items() if k != "run"}
    results_json = {"arguments": arguments, "models": dict(zip(args.models, names, strict=True)),
                    "environment": environment("cpu", args.seed), "results": report}
    write_text_atomic(out / "results.json", json.dumps(results_json, indent=1))
    write_text_atomic(out / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    print(f"results written to {out}/results.json, samples.jsonl and weights.png")
    return 0
