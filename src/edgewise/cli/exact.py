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

from edgewise.cli import csv
from edgewise.cli.benchmark import attack_specs
from edgewise.cli.options import claim_out, for_model
from edgewise.data import check_compatible, select, stack
from edgewise.data import load as load_data
from edgewise.eval.provenance import describe_attack, fingerprint_model
from edgewise.eval.report import environment, write_text_atomic
from edgewise.exact import NORMS
from edgewise.exact.network import check_network, network_from_module
from edgewise.exact.run import ATTACKS, attack_distances, certify_against
from edgewise.models import identity
from edgewise.models import load as load_model


def register(commands: Any) -> None:
    parser = commands.add_parser("exact", help="certified minimal distances by mixed-integer programming")
    parser.add_argument("--model", default="tinymlp-fmnist", help="zoo model or model spec (a small ReLU network)")
    parser.add_argument("--weights", default=None, help="state_dict file for --model")
    parser.add_argument("--data", default="sample", help="data spec (sample, fmnist-test, a folder, an .npz)")
    parser.add_argument("--split", default=None, help="the split of a CIFAR or IDX folder (default: test)")
    parser.add_argument("--n", type=int, default=10, help="number of samples (from --offset on)")
    parser.add_argument("--offset", type=int, default=0, help="dataset index of the first sample")
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
    parser.add_argument("--batch-size", type=int, default=100, help="samples per batch of the attacks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attacks' random draws (per batch)")
    parser.add_argument("--out", default="results/exact", help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.gap < 1:
        raise ValueError(f"--gap must be in [0, 1), got {args.gap}")
    if not args.time_limit > 0:
        raise ValueError(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    if args.steps < 1 or args.batch_size < 1:
        raise ValueError(f"--steps and --batch-size must be >= 1, got {args.steps} and {args.batch_size}")
    names = args.attacks if args.attacks is not None else list(ATTACKS[args.distance])
    # A baseline whose library is missing is skipped with one line, as in `edgewise benchmark`.
    specs = attack_specs(names, distance=args.distance, baselines=False)
    attacks = {spec.name: spec.build(args.steps) for spec in specs}
    model = load_model(args.model, weights=args.weights)
    dataset = for_model(load_data(args.data, split=args.split), args.model)
    check_compatible(model, dataset)
    indices = select(dataset, n=args.n, offset=args.offset)
    inputs, labels = stack(dataset, indices)
    # Before any attack runs: a network the mixed-integer program cannot express is refused in one line.
    check_network(network_from_module(model, tuple(inputs.shape[1:])), model, inputs[:2])
    out = Path(args.out)
    # What produced the solved samples saved under --out (the samples themselves are not in the record: a larger
    # --n solves only the missing ones); another model, data, norm, solver setting or attack is refused.
    claim_out(out, "exact", {
        "model": {**identity(args.model, weights=args.weights), "state_sha256": fingerprint_model(model)},
        "data": dataset.identity, "distance": args.distance, "time_limit": args.time_limit, "gap": args.gap,
        "attacks": {name: describe_attack(attack) for name, attack in attacks.items()}, "seed": args.seed,
        "batch_size": args.batch_size,
    })
    progress = not args.no_progress
    distances, closest = attack_distances(model, inputs, labels, attacks, norm=args.distance, folder=out / "attacks",
                                 indices=indices, batch_size=args.batch_size, seed=args.seed, progress=progress)
    result, summary = certify_against(model, inputs, labels, distances, norm=args.distance,
                                      time_limit=args.time_limit, folder=out, indices=indices, progress=progress,
                                      title=f"{args.model} {args.distance}", starts=closest, gap=args.gap)
    with (out / "samples.jsonl").open("w") as lines:
        for i in range(len(inputs)):
            lines.write(json.dumps({"index": int(indices[i]), "label": int(labels[i]), "status": result.status[i],
                                    "distance": float(result.distance[i]),
                                    "lower_bound": float(result.lower_bound[i]), "seconds": float(result.seconds[i]),
                                    "attacks": {name: float(d[i]) for name, d in distances.items()}}) + "\n")
    arguments = {k: v for k, v in vars(args).items() if k != "run"}
    write_text_atomic(out / "results.json", json.dumps(
        {"summary": summary, "model": identity(args.model, weights=args.weights), "arguments": arguments,
         "environment": environment("cpu", args.seed)}, indent=1, default=str).replace("Infinity", "null") + "\n")
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
