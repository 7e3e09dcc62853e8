"""FAB's settings under a query budget, on design images: the final search, restarts and FAB-T's target classes.

    OMP_NUM_THREADS=1 python benchmarks/fab_design.py [--models mlp-fmnist,tinymlp-pgd-fmnist] [--norms l1,l2,linf]
                                                      [--budget 1000] [--n 200]

Every setting is ``attacks.fab.fab`` with ``budget=Q`` passes per sample (counted by ``models.CountingModel``,
checked ≤ Q); a sample's distance is that of the returned point, re-verified (misclassified, else inf). Images:
the first n correctly classified Fashion-MNIST test images outside the shipped sample
(``alma_rmsprop_sweep.held_out``), the design images, apart from the last 500 that the AttackBench reports use.
Each setting is compared with the paper's (one run from the input, no final search) by the paired per-image ratio
(``eval.metrics.paired_ratio``). Writes benchmarks/results/fab_design_qQ.{md,json}; a rerun with the same source
and setting reuses the finished (model, norm, setting) cells.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from alma_rmsprop_sweep import held_out
from edgewise.attacks.fab import fab
from edgewise.distances import get as get_distance
from edgewise.eval.metrics import format_ratio, paired_ratio
from edgewise.eval.provenance import edgewise_identity
from edgewise.models import load_model
from edgewise.models.wrappers import CountingModel

RESULTS = Path(__file__).parent / "results"
PAPER = "paper: 1 run, no final search"
SETTINGS: dict[str, dict[str, Any]] = {
    PAPER: {"final_search": 0},
    "final search (default: 3 + the passes left)": {},
    "2 runs, final search": {"restarts": 2},
    "3 runs, final search": {"restarts": 3},
    "FAB-T, 1 target": {"target_classes": 1},
    "FAB-T, 3 targets": {"target_classes": 3},
    "FAB-T, 5 targets": {"target_classes": 5},
    "FAB-T, 9 targets (registry fab_t)": {"target_classes": 9},
}


def run(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, norm: str, budget: int,
        options: dict[str, Any]) -> tuple[list[float], int]:
    """Per-sample distances of one setting (inf where the returned point is not adversarial) and the passes per
    sample it spent."""
    counting = CountingModel(model)
    adv = fab(counting, inputs, labels, norm=norm, budget=budget, generator=torch.Generator().manual_seed(0),
              **options).detach()
    with torch.no_grad():
        fooled = model(adv).argmax(1) != labels
    spent = (counting.forwards + counting.backwards) // len(inputs)
    if spent > budget:
        raise SystemExit(f"a setting spent {spent} passes per sample, above the budget {budget}: {options}")
    return torch.where(fooled, get_distance(norm)(inputs)(adv), torch.inf).tolist(), spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp-fmnist,tinymlp-pgd-fmnist")
    parser.add_argument("--norms", default="l1,l2,linf")
    parser.add_argument("--budget", type=int, default=1000, help="Q, forward + backward passes per sample")
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    path = RESULTS / f"fab_design_q{args.budget}.json"
    setting = {"budget": args.budget, "n": args.n, "edgewise": edgewise_identity()}
    record = json.loads(path.read_text()) if path.is_file() else {"setting": setting, "cells": {}}
    if record["setting"] != setting:
        raise SystemExit(f"{path} was written with {record['setting']}, this run has {setting}")
    lines = [f"# FAB settings at Q = {args.budget} passes per sample (design images)", "",
             f"n = {args.n} held-out Fashion-MNIST test images (the first correctly classified ones outside the "
             "shipped sample); paired ratio of each setting to the paper's, geometric mean [95% interval].", "",
             "| model | norm | setting | median | passes per sample | ratio to the paper's setting | smaller "
             "| larger |",
             "|---|---|---|---|---|---|---|---|"]
    for name in args.models.split(","):
        model = load_model(name)
        inputs, labels = held_out(model, args.n)
        for norm in args.norms.split(","):
            for label, options in SETTINGS.items():
                key = f"{name}/{norm}/{label}"
                if key not in record["cells"]:
                    distances, spent = run(model, inputs, labels, norm=norm, budget=args.budget, options=options)
                    record["cells"][key] = {"distances": distances, "spent": spent}
                    path.write_text(json.dumps(record))
                    print(key, flush=True)
            paper = torch.tensor(record["cells"][f"{name}/{norm}/{PAPER}"]["distances"])
            for label in SETTINGS:
                cell = record["cells"][f"{name}/{norm}/{label}"]
                distances = torch.tensor(cell["distances"])
                ratio = paired_ratio(distances, paper)
                shown = "–" if ratio is None else (f"{format_ratio(ratio)} | {ratio['smaller']:.1%} | "
                                                   f"{ratio['larger']:.1%}")
                lines.append(f"| {name} | {norm} | {label} | {float(distances.median()):.4g} | {cell['spent']} | "
                             f"{shown} |")
    (RESULTS / f"fab_design_q{args.budget}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
