"""edgewise's ``auto`` (the attack portfolio), or other attacks run after the solver (``--attacks``), against the
certified minima of a finished exact_distances run.

A certified lower bound holds for every input, whatever found it, so an attack run after the solver is compared
with the same certificates: per model and norm of ``--results`` (an output folder of exact_distances.py), the
held-out images of its ``samples.jsonl``, each attack at ``--budget`` forward + backward passes per sample
(AttackBench's protocol, as there) and its ratio to the certified distance (median, mean, 95th percentile,
fraction within 1%, any image below a certified lower bound: a bug), next to edgewise's best single attack of
that run (the smallest median ratio). The solver's ``upper`` and start came from the single attacks only.
Over every image where the solver found a point (certified or not: an upper bound of the minimum that it
polished from the single attacks' points), the ratio of each attack's distance to that point too: how far the
attacks are from the best point known. Resumable: the attacks' batches go to ``--work``.

    OMP_NUM_THREADS=1 python benchmarks/exact_auto.py --results benchmarks/results/exact_distances_polished \
        [--attacks auto,fab_t]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from edgewise.eval.report import environment, write_text_atomic
from edgewise.eval.run import run_attack
from edgewise.exact.compare import compare
from edgewise.models import load_model
from exact_distances import budget_attack, held_out  # type: ignore[import-not-found]


def against_known(exact: torch.Tensor, distances: torch.Tensor) -> dict[str, Any]:
    """Attack distance / the solver's distance over the images where the solver found a point at a distance > 0:
    the number of images, the median and 95th percentile, and the fraction where the solver's point is more
    than 1% closer (ratio > 1.01)."""
    usable = torch.isfinite(exact) & (exact > 0)
    ratio = distances[usable] / exact[usable]
    if not len(ratio):
        return {"n": 0, "median": None, "p95": None, "over_1pct": None}
    return {"n": int(usable.sum()), "median": float(ratio.median()), "p95": float(ratio.quantile(0.95)),
            "over_1pct": float((ratio > 1.01).double().mean())}


def run_one(samples: Path, model_name: str, norm: str, args: argparse.Namespace) -> dict[str, Any]:
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    inputs, labels, indices = held_out(args.n)
    if [int(i) for i in indices] != [row["index"] for row in rows]:
        raise ValueError(f"{samples}: its images are not the first {args.n} held-out ones")
    model = load_model(model_name)
    later = {}
    for name in args.attacks.split(","):
        attack = budget_attack(name, norm=norm, budget=args.budget)
        result = run_attack(model, inputs, labels, attack, batch_size=100, distances=(norm,), seed=0,
                            indices=indices, resume_dir=Path(args.work) / model_name / norm / name,
                            progress=not args.no_progress, checks=False)
        later[name] = result.distances[norm].double()
    exact = torch.tensor([row["exact"] for row in rows], dtype=torch.float64)
    lower = torch.tensor([row["lower_bound"] for row in rows], dtype=torch.float64)
    status = [row["status"] for row in rows]
    single = [name for name in rows[0] if name not in ("index", "label", "status", "exact", "lower_bound", "seconds")]
    attacks = {**later, **{name: torch.tensor([row[name] for row in rows], dtype=torch.float64) for name in single}}
    stats = compare(exact, lower, status, attacks)
    own = [name for name in single if ":" not in name]
    best = min(own, key=lambda name: (stats[name]["median"] or float("inf"), stats[name]["p95"] or 0.0))
    shown = [*later, best]
    return {"model": model_name, "norm": norm, "certified": stats[best]["n"], "shown": shown,
            **{name: stats[name] for name in shown},
            "against_known": {name: against_known(exact, attacks[name]) for name in shown}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="an output folder of exact_distances.py")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--budget", type=int, default=1000, help="forward + backward passes per sample")
    parser.add_argument("--attacks", default="auto", help="comma list of attacks run after the solver")
    parser.add_argument("--out", default=None, help="default: RESULTS/auto")
    parser.add_argument("--work", default="runs/exact_auto", help="resume files (the attacks' batches)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "auto"
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_one(samples, samples.parent.parent.name, samples.parent.name, args)
            for samples in sorted(results.glob("*/*/samples.jsonl"))]
    lines = [f"# {args.attacks} against the certified minimal distances", "",
             f"`python benchmarks/exact_auto.py --results {args.results} --n {args.n} --budget {args.budget} "
             f"--attacks {args.attacks}`", "",
             f"{args.attacks} at {args.budget} passes per sample on the images of `{args.results}`; ratio = distance / "
             "certified lower bound over the images certified optimal there, next to the single attack of that "
             "run with the smallest median; against the solver's point: distance / "
             "the solver's distance over every image where it found one (certified or not), its median and the "
             "fraction of images where the solver's point is more than 1% closer.", "",
             "| model | norm | certified | attack | median | mean | p95 | within 1% | failures | below lower bound | "
             "images with a solver point | median vs it | solver > 1% closer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for name in row["shown"]:
            s, k = row[name], row["against_known"][name]
            shown = [f"{s[k]:.4f}" if s[k] is not None else "–" for k in ("median", "mean", "p95")]
            lines.append(f"| {row['model']} | {row['norm']} | {row['certified']} | {name} | {' | '.join(shown)} | "
                         f"{s['within_1pct'] if s['within_1pct'] is None else format(s['within_1pct'], '.2f')} | "
                         f"{s['failures']} | {len(s['below_lower_bound'])} | {k['n']} | "
                         + (f"{k['median']:.4f} | {k['over_1pct']:.2f} |" if k["n"] else "– | – |"))
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    write_text_atomic(out / "report.json", json.dumps({"rows": rows, "arguments": vars(args),
                                                       "environment": environment("cpu", 0)}, indent=1,
                                                      default=str).replace("Infinity", "null") + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
