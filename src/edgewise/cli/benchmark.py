"""``edgewise benchmark``: the ALMA paper's evaluation protocol over zoo models × attacks × budgets.

    edgewise benchmark --model smallcnn-fmnist --attack alma-l2,ddn,fmn-l2,adv-lib:ddn --distance l2 \\
        --steps 100,1000 --n 1000 --out report/

    edgewise benchmark --model smallcnn-fmnist --attack ddn,fmn-l2,apgd_minimal-l2 --budget 1000 --n 500

With ``--budget Q`` every attack runs under AttackBench's protocol: Q forward + backward passes per sample, its
distance per sample the best successful point it queried; ``--steps`` defaults to Q / 2 (one forward and one
backward per step), shared among the rounds of an attack with a search (C&W, the ε searches).

Writes ``report.md``, ``report.json`` and ``robust_accuracy-MODEL.png`` under --out; finished cells (and batches)
are kept under ``--out/cells`` and reused when the same command runs again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from edgewise.cli import csv
from edgewise.cli.options import (
    add_data,
    add_models,
    add_run,
    check_applicable,
    check_positive,
    check_seconds,
    claim_out,
    data_identity,
    evaluated,
    for_model,
    load_data,
    load_models,
    model_folders,
    models_of,
    remove_outputs,
)
from edgewise.data import check_compatible, stack
from edgewise.eval.baselines import BASELINES, MissingLibraryError
from edgewise.eval.benchmark import BEST, AttackSpec, benchmark, check_steps, resolve, write_report
from edgewise.eval.report import environment
from edgewise.validation import check_device

DISTANCES = ("l0", "l1", "l2", "linf")


def register(commands: Any) -> None:
    parser = commands.add_parser("benchmark", help="compare minimal attacks on models (ALMA paper protocol)",
                                 description=__doc__)
    add_models(parser, default=["smallcnn-fmnist"], several=True, help="the models")
    parser.add_argument("--attack", type=csv(str), action="extend", default=None,
                        help="edgewise attacks (name or name-distance, e.g. fmn-l2) and baselines "
                             f"(library:attack: {', '.join(sorted(BASELINES))}); a comma list or repeated "
                             "(default: ddn,fmn-l2)")
    parser.add_argument("--baselines", action="store_true",
                        help="also run every installed baseline that minimizes --distance")
    parser.add_argument("--distance", default="l2", choices=DISTANCES, help="what every attack minimizes")
    parser.add_argument("--steps", type=csv(int), default=None,
                        help="comma list of iterations per attack, e.g. 100,1000 (default: 100, or --budget / 2 "
                             "with --budget)")
    parser.add_argument("--budget", type=int, default=None,
                        help="forward + backward passes per sample every attack may spend (AttackBench's protocol; "
                             "default: none)")
    add_data(parser)
    add_run(parser, out="report")
    parser.add_argument("--exact", action="store_true",
                        help="also certify the minimal distances (edgewise.exact, small ReLU networks) inside the "
                             "attacks' best radius and report each attack's ratio to them (exact-MODEL.json, .png)")
    parser.add_argument("--exact-time-limit", type=float, default=60.0,
                        help="seconds per sample, bound tightening and solver together")
    parser.set_defaults(run=run, attack_default=["ddn", "fmn-l2"])


def attack_specs(names: list[str], *, distance: str, baselines: bool) -> list[AttackSpec]:
    """Resolve the attack names; a baseline whose library is missing is skipped with one line on stderr."""
    wanted = list(dict.fromkeys(names + ([n for n, b in BASELINES.items() if b.distance == distance]
                                         if baselines else [])))
    specs = []
    for name in wanted:
        try:
            specs.append(resolve(name, distance=distance))
        except MissingLibraryError as error:
            print(f"edgewise: skipping {name}: {error}", file=sys.stderr)
    if not specs:
        raise ValueError("--attack: nothing to run (every requested attack was skipped: its library is missing)")
    return specs


def run(args: argparse.Namespace) -> int:
    check_applicable(args)
    specs = models_of(args)
    if args.budget is not None and args.budget < 2:
        raise ValueError(f"--budget must be >= 2 (forward + backward passes per sample), got {args.budget}")
    if args.steps is None:
        args.steps = [100] if args.budget is None else [args.budget // 2]
    if not args.steps:
        raise ValueError("--steps must name at least one budget")
    if any(s < 1 for s in args.steps):
        raise ValueError(f"--steps must be positive, got {args.steps}")
    check_positive("--batch-size", args.batch_size)
    check_seconds("--exact-time-limit", args.exact_time_limit)
    attacks = attack_specs(args.attack or args.attack_default, distance=args.distance, baselines=args.baselines)
    check_steps(attacks, args.steps, args.budget)
    dataset, indices = load_data(args)
    device = check_device(args.device)
    loaded, identities = load_models(specs, args, device=device)
    names = model_folders(specs)
    models, data = {}, {}
    for name, spec, model in zip(names, specs, loaded, strict=True):
        seen = for_model(dataset, spec)
        check_compatible(model, seen, device=device)
        inputs, labels = stack(seen, indices)
        models[name] = model
        data[name] = (inputs.contiguous().to(device), labels.to(device))
    if args.exact:
        check_exact(models, data, args.distance)
    out = Path(args.out or "report")
    arguments = {k: v for k, v in vars(args).items() if k not in ("run", "given", "model_default", "attack_default")}
    arguments["model"] = specs
    arguments["attack"] = [s.name for s in attacks]
    arguments["n"] = len(indices)  # the effective count (--n default: all), for the report header
    # Cells are kept per model, attack and budget: adding one of them reuses the others; the record holds what
    # every cell depends on. The samples are not in it: each cell checks its batches' members (a larger --n
    # computes only the missing samples).
    record = {"models": dict(zip(names, identities, strict=True)), "data": dataset.identity,
              "distance": args.distance, "budget": args.budget, "seed": args.seed, "batch_size": args.batch_size}
    provenance = claim_out(out, "benchmark", record)
    if args.exact:
        claim_exact_folders(models, out, args)
    print(evaluated(identities, data_identity(dataset, indices)), flush=True)
    remove_outputs(out, ("report.md", "report.json"),
                   ("robust_accuracy-*.png", "exact-*.json", "exact/*/attack_vs_exact.png"))
    env = environment(str(device), args.seed)  # before the run: its commit is the code that runs
    started = time.perf_counter()
    report = benchmark(models, data, attacks, args.steps, distance=args.distance, out=out, budget=args.budget,
                       batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress,
                       log=lambda line: print(line, flush=True))
    env["total_seconds"] = time.perf_counter() - started
    written = write_report(report, out, arguments={**arguments, "provenance": provenance}, env=env)
    if args.exact:
        written += exact_reports(report, models, data, indices, out, args)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def check_exact(models: dict[str, Any], data: dict[str, Any], distance: str) -> None:
    """--exact, before any attack runs (as ``edgewise exact`` does): the norm must be one the solver certifies and
    each model a network the mixed-integer program expresses; otherwise every cell ran before the solver
    refused, in words not naming the option."""
    from edgewise.exact import NORMS
    from edgewise.exact.network import checked_network

    if distance not in NORMS:
        raise ValueError(f"--exact certifies --distance {', '.join(NORMS)}, got --distance {distance}")
    for name, model in models.items():
        try:
            checked_network(model, data[name][0][:2])
        except ValueError as error:
            raise ValueError(f"--exact: --model {name}: {error}") from error


def exact_folder(out: Path, name: str) -> Path:
    """Where --exact keeps model ``name``'s solved samples (``certify_against``'s folder)."""
    return out / "exact" / name


def claim_exact_folders(models: dict[str, Any], out: Path, args: argparse.Namespace) -> None:
    """--exact, before any cell runs: a model's solved samples of another time limit (or model, norm) are refused
    in one line now, not after every attack ran."""
    from edgewise.exact.run import claim_exact, solved_folder

    for name, model in models.items():
        claim_exact(solved_folder(exact_folder(out, name)), model, norm=args.distance, time_limit=args.exact_time_limit,
                    label=f"--out {out} (--exact, exact/{name})")


def exact_reports(report: dict[str, Any], models: dict[str, Any], data: dict[str, Any], indices: torch.Tensor,
                  out: Path, args: argparse.Namespace) -> list[Path]:
    """--exact: per model, the certified distances and every (attack, steps) cell's ratio to them (solved samples
    kept per dataset index under ``out/exact/MODEL``)."""
    from edgewise.cli.exact import print_summary
    from edgewise.eval.report import write_text_atomic
    from edgewise.exact.run import certify_against

    written = []
    for name, model in models.items():
        curves = {label: d for label, d in report["models"][name]["curves"].items() if label != BEST}
        folder = exact_folder(out, name)
        inputs, labels = data[name]
        _, summary = certify_against(model, inputs, labels, curves, norm=args.distance,
                                     time_limit=args.exact_time_limit, folder=folder, indices=indices,
                                     progress=not args.no_progress,
                                     title=f"{name} {args.distance}")
        path = out / f"exact-{name}.json"
        write_text_atomic(path, json.dumps(summary, indent=1).replace("Infinity", "null") + "\n")
        print(name, end=": ")
        print_summary(summary)
        written += [path, folder / "attack_vs_exact.png"]
    return written
