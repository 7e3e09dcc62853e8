"""``edgewise benchmark``: the ALMA paper's evaluation protocol over zoo models × attacks × budgets.

    edgewise benchmark --models smallcnn-fmnist --attacks alma-l2,ddn,fmn-l2,adv-lib:ddn --distance l2 \\
        --steps 100,1000 --n 1000 --out report/

    edgewise benchmark --models smallcnn-fmnist --attacks ddn,fmn-l2,apgd_minimal-l2 --budget 1000 --n 500

With ``--budget Q`` every attack runs under AttackBench's protocol: Q forward + backward passes per sample, its
distance per sample the best successful point it queried; ``--steps`` defaults to Q / 2 (one forward and one
backward per step).

Writes ``report.md``, ``report.json`` and ``robust_accuracy-MODEL.png`` under --out; finished cells (and batches)
are kept under ``--out/cells`` and reused when the same command runs again.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from edgewise.cli import csv
from edgewise.cli.attack import load_data
from edgewise.eval.baselines import BASELINES, MissingLibraryError
from edgewise.eval.benchmark import AttackSpec, benchmark, resolve, write_report
from edgewise.eval.report import environment
from edgewise.models import list_models, load_model

DISTANCES = ("l1", "l2", "linf")


def register(commands: Any) -> None:
    parser = commands.add_parser("benchmark", help="compare minimal attacks on models (ALMA paper protocol)")
    parser.add_argument("--models", type=csv(str), default=["smallcnn-fmnist"], help="zoo models, comma-separated")
    parser.add_argument("--attacks", type=csv(str), default=["ddn", "fmn-l2"],
                        help="edgewise attacks (name or name-distance, e.g. fmn-l2) and baselines "
                             f"(library:attack: {', '.join(sorted(BASELINES))})")
    parser.add_argument("--baselines", action="store_true",
                        help="also run every installed baseline that minimizes --distance")
    parser.add_argument("--distance", default="l2", choices=DISTANCES)
    parser.add_argument("--steps", type=csv(int), default=None,
                        help="iterations per attack, e.g. 100,1000 (default: 100, or --budget / 2 with --budget)")
    parser.add_argument("--budget", type=int, default=None,
                        help="forward + backward passes per sample every attack may spend (AttackBench's protocol)")
    parser.add_argument("--data", default="sample", choices=("sample", "fmnist-test"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--n", type=int, default=1000, help="number of samples (the first n)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="report")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)


def attack_specs(names: list[str], *, distance: str, baselines: bool) -> list[AttackSpec]:
    """Resolve the attack names; a baseline whose library is missing is skipped with one line on stderr."""
    wanted = list(dict.fromkeys(names + ([n for n, b in BASELINES.items() if b.distance == distance]
                                         if baselines else [])))
    specs = []
    for name in wanted:
        try:
            specs.append(resolve(name, distance=distance))
        except MissingLibraryError as error:
            print(f"edgewise benchmark: skipping {name}: {error}", file=sys.stderr)
    if not specs:
        raise ValueError("--attacks: nothing to run (every requested attack was skipped)")
    return specs


def run(args: argparse.Namespace) -> int:
    zoo = list_models()
    missing = [m for m in args.models if m not in zoo]
    if missing:
        raise ValueError(f"--models: {missing} not in the zoo {sorted(zoo)}; it may not be trained yet")
    if args.budget is not None and args.budget < 2:
        raise ValueError(f"--budget must be >= 2 (forward + backward passes per sample), got {args.budget}")
    if args.steps is None:
        args.steps = [100] if args.budget is None else [args.budget // 2]
    if not args.models or not args.steps:
        raise ValueError("--models and --steps must each name at least one value")
    if any(s < 1 for s in args.steps):
        raise ValueError(f"--steps must be positive, got {args.steps}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    specs = attack_specs(args.attacks, distance=args.distance, baselines=args.baselines)
    inputs, labels = load_data(args.data, args.data_root, args.n)
    models, data = {}, {}
    for name in args.models:
        models[name] = load_model(name, device=args.device)
        channels = zoo[name]["in_channels"]
        data[name] = (inputs.expand(-1, channels, -1, -1).contiguous().to(args.device), labels.to(args.device))
    started = time.perf_counter()
    report = benchmark(models, data, specs, args.steps, distance=args.distance, out=args.out, budget=args.budget,
                       batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress,
                       log=lambda line: print(line, flush=True))
    arguments = {k: v for k, v in vars(args).items() if k != "run"}
    arguments["attacks"] = [s.name for s in specs]
    env = environment(args.device, args.seed)
    env["total_seconds"] = time.perf_counter() - started
    written = write_report(report, args.out, arguments=arguments, env=env)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
