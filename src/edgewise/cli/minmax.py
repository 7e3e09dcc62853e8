"""``edgewise minmax``: average vs min-max (APGDA) attacks over models, inputs or transformations.

Runs both strategies with the same budget on the shipped sample (or the full test set), prints the comparison
the way Tables 1 / A3-A5 of the min-max supplement do (accuracy per domain under attack, ASR_all / ASR_gp,
ASR_avg, Lift), and writes ``results.json``, ``samples.jsonl`` and ``weights.png`` (the learned w) under --out.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

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
from edgewise.attacks.minmax.apgda import check_minmax_options
from edgewise.attacks.minmax.metrics import accuracy
from edgewise.cli import csv
from edgewise.cli.options import (
    add_data,
    add_models,
    add_run,
    check_applicable,
    check_eps,
    check_positive,
    claim_out,
    data_identity,
    evaluated,
    load_data,
    load_models,
    model_folders,
    models_of,
    remove_outputs,
    safe_name,
)
from edgewise.data import ImageDataset, check_compatible, stack
from edgewise.eval.report import environment, write_text_atomic
from edgewise.eval.run import _save_atomic as save_atomic
from edgewise.projections import NORMS
from edgewise.validation import check_device

ZOO = {"A": "mlp-fmnist", "B": "allcnn-fmnist", "C": "lenet-fmnist", "D": "lenetv2-fmnist"}
"""Models A-D of Table A1 (min-max supplement), trained on Fashion-MNIST by ``edgewise train``."""

KINDS = ("ensemble", "universal", "transform")
STRATEGIES = ("average", "minmax")
TRANSFORM_NAMES = ("identity", "hflip", "vflip", "brightness", "gamma", "crop", "rotation")
Attack = Callable[..., MinMaxResult]


def register(commands: Any) -> None:
    parser = commands.add_parser("minmax", help="average vs min-max attacks over models, inputs or transforms",
                                 description=__doc__)
    parser.add_argument("--kind", default="ensemble", choices=KINDS,
                        help="ensemble: one perturbation fooling all models; universal: one perturbation per "
                             "group of --group-size images; transform: robust to every transformation")
    add_models(parser, default=["A", "B", "C", "D"], several=True,
               help="the models (A-D: Table A1's; ensemble: the ensemble, otherwise one run per model)")
    parser.add_argument("--distance", default="linf", choices=NORMS, help="the threat model's lp norm")
    parser.add_argument("--eps", type=csv(float), default=[0.2],
                        help="comma list of budgets ε (for l0: input values that may change); one comparison each")
    parser.add_argument("--steps", type=int, default=None,
                        help="APGDA iterations (default: 50 for ensemble, 20 otherwise, as in D.2)")
    parser.add_argument("--step-size", type=float, default=None,
                        help="α as a fraction of ε (l0: the step length itself, as ε counts values; default: "
                             "D.2's; transform linf: Tables A4/A5)")
    parser.add_argument("--weight-step", type=float, default=None, help="β (default: as --step-size)")
    parser.add_argument("--gamma", type=float, default=None, help="γ (default: as --step-size)")
    parser.add_argument("--group-size", type=int, default=5,
                        help="universal: images sharing one perturbation (--n must be a multiple of it)")
    parser.add_argument("--transforms", type=csv(str), default=list(TRANSFORM_NAMES),
                        help=f"transform: comma list of {', '.join(TRANSFORM_NAMES)}")
    parser.add_argument("--random", action="store_true", help="transform: random transformations (Table A4)")
    add_data(parser)
    add_run(parser, out="results/minmax-KIND-DISTANCE", batch_size=250)
    parser.set_defaults(run=run)


def model_name(key: str) -> str:
    """A-D -> the zoo name of Table A1's model; other names pass through."""
    return ZOO.get(key, key)


def _concatenate(parts: Sequence[MinMaxResult]) -> MinMaxResult:
    return MinMaxResult(adv=torch.cat([p.adv for p in parts]), weights=torch.cat([p.weights for p in parts]),
                        history=torch.cat([p.history for p in parts], 1),
                        fooled=torch.cat([p.fooled for p in parts]),
                        clean_fooled=torch.cat([p.clean_fooled for p in parts]))


def eps_key(eps: float) -> str:
    """ε as the text that keys its batches and results: the shortest that reads back as the same float (so
    distinct budgets never share a key, unlike ``:g``), without a trailing ``.0`` (``1``, ``0.05``)."""
    text = repr(float(eps))
    return text.removesuffix(".0")


def run_batched(attack: Attack, target: Any, inputs: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
                indices: torch.Tensor | None = None, seed: int = 0, resume_dir: Path | None = None,
                record: dict[str, Any] | None = None, progress: bool = False) -> MinMaxResult:
    """``attack(target, x, y)`` over consecutive batches, results concatenated in order.

    An attack taking ``generator`` gets one seeded with ``seed`` and the batch's first dataset index (so a batch's
    result does not depend on the batches before it). With ``resume_dir`` each finished batch is saved there with
    its samples' dataset ``indices`` and ``record`` (what else the batch depends on, e.g. its ε) and reused when a
    batch with the same indices and record is asked for again; a stored batch that differs is recomputed."""
    indices = torch.arange(len(inputs)) if indices is None else indices
    takes_generator = "generator" in inspect.signature(attack).parameters
    parts = []
    for start in tqdm(range(0, inputs.shape[0], batch_size), desc="minmax", unit="batch", disable=not progress,
                      leave=False):
        members = indices[start : start + batch_size].cpu()
        path = resume_dir / f"batch-{int(members[0]):08d}-{batch_size}.pt" if resume_dir is not None else None
        if path is not None and path.is_file():
            saved = torch.load(path, weights_only=True)
            # Batches written before the record was kept have none: recomputed, as their ε key was lossy.
            if saved.pop("record", None) == record and torch.equal(saved.pop("indices"), members):
                parts.append(MinMaxResult(**saved))
                continue
        extra = {"generator": torch.Generator(inputs.device).manual_seed(seed * 1_000_003 + int(members[0]))} \
            if takes_generator else {}
        part = attack(target, inputs[start : start + batch_size], labels[start : start + batch_size], **extra)
        part = MinMaxResult(**{k: v.detach().cpu() for k, v in vars(part).items()})
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_atomic({**vars(part), "indices": members, "record": record}, path)
        parts.append(part)
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
            seed: int = 0, indices: torch.Tensor | None = None, resume_dir: Path | None = None,
            progress: bool = False) -> tuple[dict[str, Any], dict[str, MinMaxResult], list[str]]:
    """Average and min-max attacks of one ``kind`` on ``targets`` (name -> model).

    Returns (summary, results by strategy, domain names). ``ensemble``: the ensemble of all targets;
    ``universal`` / ``transform``: exactly one target. ``options``: extra keyword arguments of the attack.
    ``indices`` (dataset indices of ``inputs``), ``seed``, ``resume_dir`` and ``progress``: as in ``run_batched``
    (one sub-folder per strategy, each batch recorded with its ε and strategy).
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
        bound = partial(attack, norm=norm, eps=eps, strategy=strategy, **options)
        start = time.perf_counter()
        results[strategy] = run_batched(bound, target, inputs, labels, batch_size=batch_size, indices=indices,
                                        seed=seed, resume_dir=resume_dir / strategy if resume_dir else None,
                                        record={"eps": float(eps), "strategy": strategy}, progress=progress)
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


OUTPUTS = ("results.json", "samples.jsonl", "weights.png")


def check_targets(targets: dict[str, nn.Module], dataset: ImageDataset) -> None:
    """Each model must take the data's inputs and give logits for its classes (``edgewise.data.check_compatible``):
    one line naming the model, not a traceback from inside the attack."""
    for key, model in targets.items():
        try:
            check_compatible(model, dataset)
        except ValueError as error:
            raise ValueError(f"--model {key}: {error}") from error


def domain_names(keys: Sequence[str]) -> list[str]:
    """One name per ``--model``, the domain (and results key) of that model: a spec given more than once (each
    built with its own --weights/--model-args) is numbered by occurrence, ``net.py:build#1``, ``net.py:build#2``
    (keyed by the bare spec, the ensemble kept only the last one)."""
    counts, seen = Counter(keys), Counter[str]()
    names = []
    for key in keys:
        seen[key] += 1
        names.append(f"{key}#{seen[key]}" if counts[key] > 1 else key)
    if len(set(names)) != len(names):
        raise ValueError(f"--model: {list(keys)} name the same model twice ({names}); give each model once")
    return names


def check_distinct_eps(values: Sequence[float]) -> None:
    """``--eps``: each budget once (two equal ones would write the same batches and results key)."""
    repeated = sorted(eps for eps, count in Counter(map(float, values)).items() if count > 1)
    if repeated:
        raise ValueError(f"--eps must be distinct budgets, got {', '.join(map(eps_key, repeated))} more than once "
                         f"in {list(values)}")


def check_groups(args: argparse.Namespace, count: int) -> None:
    """``--kind universal``: the ``count`` samples chosen by --n (or --indices) must be whole groups of --group-size.
    Each group shares one perturbation over exactly --group-size images, the domains of the paper's Acc image i and
    ASR_gp; a shorter last group would be easier to fool whole and has no image K, so it is refused, not dropped."""
    size = args.group_size
    if size > count:
        raise ValueError(f"--group-size {size} is larger than the {count} samples of --n")
    if count % size:
        chosen = (f"--indices ({count} samples)" if args.indices is not None else
                  f"--n {count}" if args.n is not None else f"--n (default: all, {count} samples)")
        raise ValueError(f"{chosen} is not a multiple of --group-size {size}: each universal perturbation is shared "
                         "by a group of exactly --group-size images (Acc image i and ASR_gp are over such groups); "
                         f"give a multiple of {size} samples, e.g. --n {count // size * size}")


def group_indices(indices: torch.Tensor, size: int) -> list[list[int]]:
    """The dataset indices of each group of ``size`` consecutive samples (universal: the images sharing one
    perturbation; otherwise one sample per group)."""
    return [chunk.tolist() for chunk in indices.cpu().split(size)]


FLAGS = {"eps": "--eps", "step_size": "--step-size", "weight_step": "--weight-step", "gamma": "--gamma"}
"""The attacks' keyword names that the command line spells otherwise, as its errors name them."""


def check_hyperparameters(args: argparse.Namespace) -> None:
    """The attacks' checks of ε, α, β, γ for every --eps, before any batch runs, in one line naming the option."""
    for eps in args.eps:
        try:
            check_minmax_options(norm=args.distance, eps=eps, steps=args.steps or 1, strategy="minmax", loss="cw",
                                 kappa=None, step_size=args.step_size, weight_step=args.weight_step,
                                 gamma=args.gamma)
        except (TypeError, ValueError) as error:
            name, _, rest = str(error).partition(" ")
            raise ValueError(f"{FLAGS.get(name, name)} {rest}") from error


def run(args: argparse.Namespace) -> int:
    check_applicable(args)
    keys = models_of(args)
    names = domain_names(keys)
    runs = [list(names)] if args.kind == "ensemble" else [[name] for name in names]
    # Each run's batches have their own folder (an ensemble's joins its members'; one run, no clash possible).
    folders = [",".join(map(safe_name, names))] if args.kind == "ensemble" else model_folders(names)
    check_positive("--steps", args.steps)
    check_positive("--batch-size", args.batch_size)
    check_positive("--group-size", args.group_size)
    check_eps(args.eps, strict=True)
    check_distinct_eps(args.eps)
    check_hyperparameters(args)
    dataset, indices = load_data(args)
    if args.kind == "universal":
        check_groups(args, len(indices))
    device = check_device(args.device)
    models, identities = load_models([model_name(key) for key in keys], args, device=device)
    loaded = dict(zip(names, models, strict=True))
    check_targets(loaded, dataset)
    inputs, labels = stack(dataset, indices)
    options: dict[str, Any] = {"step_size": args.step_size, "weight_step": args.weight_step, "gamma": args.gamma}
    if args.kind == "universal":
        options["group_size"] = args.group_size
    if args.kind == "transform":
        unknown = sorted(set(args.transforms) - set(TRANSFORM_NAMES))
        if unknown or not args.transforms:
            raise ValueError(f"--transforms must be a comma list of {list(TRANSFORM_NAMES)}, got {args.transforms}")
        repeated = sorted(name for name, count in Counter(args.transforms).items() if count > 1)
        if repeated:
            # The domains are keyed by name: a repeated one (another random draw with --random) would print and
            # record the last one's accuracy and weights in both columns.
            raise ValueError(f"--transforms must name each transformation once, got {', '.join(repeated)} more than "
                             f"once in {args.transforms}")
        options.update(transforms=list(args.transforms), random=args.random)
    inputs, labels = inputs.to(device), labels.to(device)
    out = Path(args.out or f"results/minmax-{args.kind}-{args.distance}")
    arguments = {k: v for k, v in vars(args).items() if k not in ("run", "given", "model_default")}
    arguments["model"] = keys
    # Batches are kept per model set, ε (its exact value: eps_key), strategy and dataset indices (a larger --n or
    # another ε reuses the finished ones); the record holds what every batch depends on.
    record = {"models": dict(zip(names, identities, strict=True)), "data": dataset.identity,
              **{k: arguments[k] for k in ("kind", "distance", "steps", "step_size", "weight_step", "gamma",
                                            "group_size", "transforms", "random", "seed", "batch_size")}}
    provenance = claim_out(out, "minmax", record)
    # The samples attacked, as printed.
    provenance["data"] = data_identity(dataset, indices)
    print(evaluated(identities, provenance["data"]), flush=True)
    remove_outputs(out, OUTPUTS)
    report: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    plots: list[tuple[str, MinMaxResult]] = []
    for members, folder in zip(runs, folders, strict=True):
        targets = {name: loaded[name] for name in members}
        label = ",".join(targets)
        for eps in args.eps:
            key = eps_key(eps)
            summary, results, domains = compare(
                args.kind, targets, inputs, labels, norm=args.distance, eps=eps, steps=args.steps,
                batch_size=args.batch_size, options=options, seed=args.seed, indices=indices,
                resume_dir=out / "batches" / folder / f"eps-{key}", progress=not args.no_progress)
            title = f"{args.kind} {args.distance} eps={key} on {label} (n={inputs.shape[0]})"
            print(format_table(title, summary, domains, kind=args.kind) + "\n", flush=True)
            report.setdefault(label, {})[key] = {"domains": domains, **summary}
            several = len(runs) > 1 or len(args.eps) > 1
            name = f"{label} eps={key} " if several else ""
            plots.extend((f"{name}{s}", results[s]) for s in STRATEGIES)
            for strategy, result in results.items():
                samples = group_indices(indices, result.fooled.shape[1] if args.kind == "universal" else 1)
                for g in range(result.weights.shape[0]):
                    records.append({"model": label, "eps": eps, "strategy": strategy, "group": g,
                                    "indices": samples[g],
                                    "weights": result.weights[g].tolist(), "fooled": result.fooled[g].tolist(),
                                    "clean_fooled": result.clean_fooled[g].tolist()})
    plot_weights([p for p in plots if p[0].endswith("minmax")], domains, out / "weights.png",
                 title=f"learned domain weights w: {args.kind} {args.distance}")
    zoo_names = {name: model_name(key) for name, key in zip(names, keys, strict=True)}
    results_json = {"arguments": arguments, "provenance": provenance, "models": zoo_names,
                    "environment": environment(str(device), args.seed), "results": report}
    write_text_atomic(out / "results.json", json.dumps(results_json, indent=1))
    write_text_atomic(out / "samples.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    print(f"results written to {out}/results.json, samples.jsonl and weights.png")
    return 0
