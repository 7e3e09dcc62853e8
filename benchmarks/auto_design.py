"""The measurements behind ``attacks.auto``: its members alone and ``auto`` at the same budget, on design images.

    OMP_NUM_THREADS=1 python benchmarks/auto_design.py [--models smallcnn-fmnist,smallcnn-ddn-fmnist]
                                                      [--norm l2] [--budget 200] [--n 100]

Design images: the held-out Fashion-MNIST test images (outside the shipped sample, correctly classified,
``alma_rmsprop_sweep.held_out``) number 1,000 to 1,000 + n, so that the first 1,000, where ``auto`` is evaluated,
played no part in choosing it. Every attack gets Q forward + backward passes per sample (Q / 2 steps; the
minimal form of APGD 10 rounds of Q / 20 steps). Reported per model: success, median, AttackBench's local
optimality (``eval.metrics.local_optimality``) against the per-sample best of all attacks run, and the paired ratio
``auto`` / each attack. ℓ2 also runs ``auto_ddn``, the portfolio with DDN instead of FMN first.
Writes benchmarks/results/auto_design_NORM_qQ.{md,json}; finished cells are kept.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from alma_rmsprop_sweep import held_out
from edgewise.attacks import ATTACKS, alma, auto, ddn, fmn
from edgewise.attacks.auto import portfolio
from edgewise.distances import get as get_distance
from edgewise.eval.metrics import local_optimality, paired_ratio, reference_distances
from edgewise.models import load_model

RESULTS = Path(__file__).parent / "results"
OFFSET = 1000


def attacks(norm: str, budget: int) -> dict[str, Callable[..., torch.Tensor]]:
    steps = budget // 2
    runs: dict[str, Callable[..., torch.Tensor]] = {"fmn": functools.partial(fmn, norm=norm, steps=steps)}
    if norm == "l2":
        runs["ddn"] = functools.partial(ddn, steps=steps)
    if norm in ("l1", "l2"):
        runs["alma"] = functools.partial(alma, distance=norm, steps=steps)
    runs["apgd_minimal"] = functools.partial(ATTACKS["apgd_minimal"], norm=norm, steps=max(steps // 10, 1),
                                             binary_search_steps=10)
    runs["auto"] = functools.partial(auto, norm=norm, budget=budget)
    if norm == "l2":  # the variant with DDN first
        runs["auto_ddn"] = functools.partial(portfolio, first=ddn, norm=norm, budget=budget)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smallcnn-fmnist,smallcnn-ddn-fmnist")
    parser.add_argument("--norm", default="l2", choices=("l1", "l2", "linf"))
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    runs = attacks(args.norm, args.budget)
    name = f"auto_design_{args.norm}_q{args.budget}"
    path = RESULTS / f"{name}.json"
    record = json.loads(path.read_text()) if path.is_file() else {"n": args.n, "offset": OFFSET, "cells": {}}
    if record["n"] != args.n:
        raise SystemExit(f"{path} was written with --n {record['n']}, this run has {args.n}")
    measure = get_distance(args.norm)
    lines = [f"# auto design: {args.norm}, Q = {args.budget} passes per sample", "",
             f"n = {args.n} held-out Fashion-MNIST test images {OFFSET}..{OFFSET + args.n} (design images).", ""]
    for model_name in args.models.split(","):
        model = load_model(model_name)
        inputs, labels = (t[OFFSET:] for t in held_out(model, OFFSET + args.n))
        for label, attack in tqdm(runs.items(), desc=model_name):
            key = f"{model_name}/{label}"
            if key in record["cells"]:
                continue
            adv = attack(model, inputs, labels).detach()
            with torch.no_grad():
                fooled = model(adv).argmax(1) != labels
            record["cells"][key] = torch.where(fooled, measure(inputs)(adv), torch.inf).tolist()
            path.write_text(json.dumps(record))
        distances = {label: torch.tensor(record["cells"][f"{model_name}/{label}"]) for label in runs}
        reference = reference_distances(list(distances.values()))
        lines += [f"## {model_name}", "", "| attack | success | median | LO | auto / attack (paired) |",
                  "|---|---|---|---|---|"]
        for label, d in distances.items():
            lo = local_optimality(d, reference, clean_accuracy=1.0)
            ratio = paired_ratio(distances["auto"], d) if label != "auto" else None
            paired = "" if ratio is None else (f"{ratio['geometric_mean_ratio']:.4f} [{ratio['ci95_low']:.4f}, "
                                               f"{ratio['ci95_high']:.4f}]")
            lines.append(f"| {label} | {float(torch.isfinite(d).double().mean()):.3f} | {float(d.median()):.4g} | "
                         f"{lo:.4f} | {paired} |")
        lines.append("")
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
