"""Paired per-image ratios between two AttackBench-protocol runs on the same images: a newer ``auto`` against the
one it replaced (or against any attack of the earlier runs).

    python benchmarks/attackbench_pairs.py --new attackbench-l0-q1000-n500-swap-auto \\
        --old attackbench-l0-q1000-n500,attackbench-l0-q1000-n500-lenet [--against "auto 500,sigma_zero 500"]

Folders are under benchmarks/results/ (written by ``attackbench_budget.py``). Per model of ``--new``: the
geometric mean of new / old over the images where both found a point at a positive distance, with its 95%
interval (``eval.metrics.paired_ratio``), for each label of ``--against`` found in the old runs' distances.json
(a later ``--old`` folder overrides an earlier one for the models it holds). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from edgewise.eval.metrics import format_ratio, paired_ratio

RESULTS = Path(__file__).parent / "results"


def _distances(folder: str) -> dict[str, dict[str, list[float | None]]]:
    return json.loads((RESULTS / folder / "distances.json").read_text())["distances"]


def _tensor(values: list[float | None]) -> torch.Tensor:
    return torch.tensor([math.inf if d is None else d for d in values], dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", required=True, help="the newer run's folder")
    parser.add_argument("--old", required=True, help="comma list of the earlier runs' folders")
    parser.add_argument("--attack", default="auto 500", help="the newer run's label (attack and steps)")
    parser.add_argument("--against", default="auto 500", help="comma list of labels in the earlier runs")
    args = parser.parse_args()
    new = _distances(args.new)
    old: dict[str, dict[str, list[float | None]]] = {}
    for folder in args.old.split(","):
        old.update(_distances(folder))
    against = args.against.split(",")
    print("| model | " + " | ".join(f"new / {label}" for label in against) + " |")
    print("|---|" + "---|" * len(against))
    for model, curves in new.items():
        mine = _tensor(curves[args.attack])
        cells = [format_ratio(paired_ratio(mine, _tensor(old[model][label])) if label in old.get(model, {})
                              else None) for label in against]
        print(f"| {model} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
