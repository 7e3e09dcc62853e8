"""``edgewise exact``: certified minimal distances of a small ReLU network, next to the attacks' distances.

    edgewise exact --model tinymlp-fmnist --distance linf --n 100 --time-limit 120 --out results/exact

Attacks run first (their smallest verified distance per sample is the solver's ``upper``), then the MILP/MIQP
of :mod:`edgewise.exact` per sample. Writes ``results.json`` (fraction certified, median solve time, per attack
the ratio to the exact distance), ``samples.jsonl`` and ``attack_vs_exact.png`` under --out; attack batches
and solved samples are saved as they finish and reused when the same command runs again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from edgewise.cli import csv
from edgewise.cli.benchmark import attack_specs
from edgewise.cli.options import (
    add_data,
    add_models,
    add_run,
    check_positive,
    check_seconds,
    claim_out,
    data_identity,
    evaluated,
    for_model,
    load_data,
    load_models,
    remove_outputs,
)
from edgewise.data import check_compatible, stack
from edgewise.eval.provenance import describe_attack
from edgewise.eval.report import environment, write_text_atomic
from edgewise.exact import NORMS
from edgewise.exact.network import checked_network
from edgewise.exact.run import ATTACKS, attack_distances, certify_against

OUTPUTS = ("results.json", "samples.jsonl", "attack_vs_exact.png")
"""The report files of a run, deleted before a new run writes its own (an interrupted run leaves none of the run
before)."""


def register(commands: Any) -> None:
    parser = commands.add_parser("exact", help="certified minimal distances by mixed-integer programming",
                                 description="Run the attacks, then certify each sample's minimal distance by "
                                 "mixed-integer programming (docs/exact.md): results.json, samples.jsonl, "
                                 "attack_vs_exact.png.")
    add_models(parser, default=["tinymlp-fmnist"], several=False,
               help="the model, a small ReLU network (Linear, Conv2d, ReLU, Flatten, max-pooling, Normalize)")
    parser.add_argument("--distance", default="linf", choices=NORMS, help="the norm minimized")
    parser.add_argument("--time-limit", type=float, default=120.0,
                        help="seconds per sample, bound tightening and solver together")
    parser.add_argument("--gap", type=float, default=1e-4,
                        help="relative optimality gap at which a sample counts as solved (0.01: certifies that "
                             "the best attack is within 1%% of the minimum, much faster)")
    parser.add_argument("--attack", dest="attacks", type=csv(str), default=None,
                        help="attacks giving the upper bound and compared (default: those of the norm, "
                             "edgewise's and other libraries')")
    parser.add_argument("--steps", type=int, default=1000, help="attack iterations")
    add_data(parser, n=10)
    add_run(parser, out="results/exact", batch_size=100)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.gap < 1:
        raise ValueError(f"--gap must be in [0, 1), got {args.gap}")
    check_seconds("--time-limit", args.time_limit)
    check_positive("--steps", args.steps)
    check_positive("--batch-size", args.batch_size)
    names = args.attacks if args.attacks is not None else list(ATTACKS[args.distance])
    # A baseline whose library is missing is skipped with one line, as in `edgewise benchmark`.
    specs = attack_specs(names, distance=args.distance, baselines=False)
    attacks = {spec.name: spec.build(args.steps) for spec in specs}
    dataset, indices = load_data(args)
    device = torch.device(args.device)
    (model,), (model_record,) = load_models([args.model], args, device=device)
    seen = for_model(dataset, args.model)
    outputs = check_compatible(model, seen, device=device)
    inputs, labels = stack(seen, indices)
    # Before any attack runs: a network the mixed-integer program cannot express is refused in one line.
    checked_network(model, inputs[:2].to(device))
    out = Path(args.out or "results/exact")
    # What produced the solved samples saved under --out (the samples themselves are not in the record: a larger
    # --n solves only the missing ones); another model, data, norm, solver setting or attack is refused.
    provenance = claim_out(out, "exact", {
        "model": {**model_record, "outputs": outputs}, "data": seen.identity, "distance": args.distance,
        "time_limit": args.time_limit, "gap": args.gap,
        "attacks": {name: describe_attack(attack) for name, attack in attacks.items()}, "seed": args.seed,
        "batch_size": args.batch_size,
    })
    provenance["data"] = data_identity(seen, indices)
    remove_outputs(out, OUTPUTS)
    progress = not args.no_progress
    distances, closest = attack_distances(model, inputs.to(device), labels.to(device), attacks,
                                          norm=args.distance, folder=out / "attacks", indices=indices,
                                          batch_size=args.batch_size, seed=args.seed, progress=progress)
    # The solver reads the network's weights on the CPU.
    model.cpu()
    result, summary = certify_against(model, inputs, labels, distances, norm=args.distance,
                                      time_limit=args.time_limit, folder=out, indices=indices, progress=progress,
                                      title=f"{args.model} {args.distance}", starts=closest.cpu(), gap=args.gap)
    with (out / "samples.jsonl").open("w") as lines:
        for i in range(len(inputs)):
            lines.write(json.dumps({"index": int(indices[i]), "label": int(labels[i]), "status": result.status[i],
                                    "distance": float(result.distance[i]),
                                    "lower_bound": float(result.lower_bound[i]), "seconds": float(result.seconds[i]),
                                    "attacks": {name: float(d[i]) for name, d in distances.items()}}) + "\n")
    arguments = {k: v for k, v in vars(args).items() if k not in ("run", "given")}
    write_text_atomic(out / "results.json", json.dumps(
        {"summary": summary, "provenance": provenance, "arguments": arguments,
         "environment": environment(str(device), args.seed)}, indent=1, default=str).replace("Infinity", "null")
        + "\n")
    print(evaluated([provenance["model"]], provenance["data"]))
    print_summary(summary)
    return 0


def print_summary(summary: dict[str, Any]) -> None:
    """The printed comparison: certified count, median solve time, one line per attack."""
    seconds = "n/a" if summary["median_seconds"] is None else f"{summary['median_seconds']:.2f} s"
    print(f"certified optimal: {summary['certified']}/{summary['clean_correct']} clean-correct samples, "
          f"median solve {seconds}")
    for name, stats in summary["attacks"].items():
        median = "n/a" if stats["median"] is None else f"{stats['median']:.4f}"
        within = "n/a" if stats["within_1pct"] is None else f"{100 * stats['within_1pct']:.0f}%"
        print(f"{name}: median ratio to exact {median}, within 1% {within}, "
              f"below the certified lower bound {len(stats['below_lower_bound'])}")
