"""How far above the certified minimal distance do minimal attacks land? (edgewise.exact on the zoo's tiny nets)

Per model and norm, on Fashion-MNIST test images outside the shipped sample (held out): every attack runs with
``--budget`` forward + backward passes per sample (1,000, AttackBench's protocol), the smallest verified distance
any of them found is the solver's ``upper``, and the MILP/MIQP of edgewise.exact gives the certified minimum within
``--time-limit`` seconds per image. Reported: the fraction certified optimal, the median solve time, and per attack
the ratio of its distance to the exact one (median, mean, 95th percentile, fraction within 1%) over the certified
images, and any image where an attack beats the certified lower bound (a bug). Resumable: attack batches and solved
images are saved under ``--work`` as they finish; the report, per-image JSONL and plots go to ``--out``.

    OMP_NUM_THREADS=1 python benchmarks/exact_distances.py --n 100 --time-limit 6 --distances linf,l1
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from edgewise.data import fashion_mnist, sample_indices
from edgewise.eval.benchmark import budgeted, resolve
from edgewise.eval.report import environment, write_text_atomic
from edgewise.eval.run import Attack
from edgewise.exact.run import ATTACKS, attack_distances, certify_against
from edgewise.models import load_model

MODELS = ("tinymlp-fmnist", "tinymlp-pgd-fmnist", "tinycnn-fmnist", "tinycnn-pgd-fmnist")


def held_out(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n`` test images that are not in the shipped sample, with their test-set indices."""
    inputs, labels = fashion_mnist("test")
    shipped = set(sample_indices())
    chosen = torch.tensor([i for i in range(len(inputs)) if i not in shipped][:n])
    return inputs[chosen], labels[chosen], chosen


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "–" if value is None else ("inf" if math.isinf(value) else format(value, spec))


def budget_attack(name: str, *, norm: str, budget: int) -> Attack:
    """``name`` under AttackBench's protocol at ``budget`` forward + backward passes per sample (its best
    successful query counts), with budget / 2 steps in all: an attack with a search (C&W, PGD/APGD-minimal) gets
    that many steps per round divided by its rounds, so that every round fits in the budget."""
    spec = resolve(name, distance=norm)
    return budgeted(spec.build(spec.within(budget // 2)), budget=budget, distance=norm)


def run_one(model_name: str, norm: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    model = load_model(model_name)
    inputs, labels, indices = held_out(args.n)
    folder = Path(args.work) / model_name / norm
    shown = out / model_name / norm
    shown.mkdir(parents=True, exist_ok=True)
    attacks = {name: budget_attack(name, norm=norm, budget=args.budget) for name in ATTACKS[norm]}
    distances, closest = attack_distances(model, inputs, labels, attacks, norm=norm, folder=folder / "attacks",
                                 indices=indices, progress=not args.no_progress)
    result, summary = certify_against(model, inputs, labels, distances, norm=norm, time_limit=args.time_limit,
                                      folder=folder, indices=indices, progress=not args.no_progress,
                                      title=f"{model_name} {norm}", starts=closest, gap=args.gap)
    shutil.copy(folder / "attack_vs_exact.png", shown / "attack_vs_exact.png")
    with (shown / "samples.jsonl").open("w") as lines:
        for i in range(len(inputs)):
            lines.write(json.dumps({"index": int(indices[i]), "label": int(labels[i]), "status": result.status[i],
                                    "exact": float(result.distance[i]), "lower_bound": float(result.lower_bound[i]),
                                    "seconds": float(result.seconds[i]),
                                    **{name: float(d[i]) for name, d in distances.items()}}) + "\n")
    return {"model": model_name, **summary}


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Attacks against certified minimal distances (edgewise.exact)", "",
        f"`{' '.join(args.command)}`", "",
        f"n = {args.n} held-out Fashion-MNIST test images per model (outside the shipped sample), every attack at "
        f"{args.budget} forward + backward passes per sample (AttackBench's protocol: {args.budget // 2} steps, "
        "divided among the rounds of C&W's and PGD/APGD-minimal's searches; the best successful query counts), "
        f"solver time limit {args.time_limit} s per image (SCIP for linf and l1, edgewise's branch and bound over "
        f"PIQP's QPs for l2, 1 thread, relative gap "
        f"{args.gap}: first \"no adversarial within (1 − gap) × the closest attack's distance?\", then the "
        "minimization from the point found where there is one), 2 CPU cores shared with other jobs.",
        "Ratio = attack distance / certified lower bound, over the images certified optimal (clean errors "
        "excluded); the exact minimum lies in [lower bound, lower bound × (1 + max bracket)].", "",
        "| model | norm | certified / clean-correct | median solve s | max bracket | attack | median ratio | "
        "mean ratio | p95 ratio | within 1% | below lower bound |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name, stats in row["attacks"].items():
            lines.append(
                f"| {row['model']} | {row['norm']} | {row['certified']}/{row['clean_correct']} | "
                f"{_fmt(row['median_seconds'], '.2f')} | {_fmt(row['max_relative_bracket'], '.1e')} | {name} | "
                f"{_fmt(stats['median'])} | {_fmt(stats['mean'])} | {_fmt(stats['p95'])} | "
                f"{_fmt(stats['within_1pct'], '.2f')} | {len(stats['below_lower_bound'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--distances", default="linf,l1")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--budget", type=int, default=1000, help="forward + backward passes per sample and attack")
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--gap", type=float, default=1e-4, help="relative optimality gap of the solver")
    parser.add_argument("--out", default="benchmarks/results/exact_distances")
    parser.add_argument("--work", default="runs/exact_distances", help="resume files (attack batches, solved images)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    args.command = ["python", "benchmarks/exact_distances.py", f"--models {args.models}",
                    f"--distances {args.distances}", f"--n {args.n}", f"--budget {args.budget}",
                    f"--time-limit {args.time_limit}", f"--gap {args.gap}"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for norm in args.distances.split(","):
        for model_name in args.models.split(","):
            rows.append(run_one(model_name, norm, args, out))
            write_text_atomic(out / "report.md", markdown(rows, args))
            write_text_atomic(out / "report.json", json.dumps(
                {"rows": rows, "arguments": vars(args), "environment": environment("cpu", 0)}, indent=1,
                default=str).replace("Infinity", "null") + "\n")
            print(markdown(rows[-1:], args).splitlines()[-1])


if __name__ == "__main__":
    main()
