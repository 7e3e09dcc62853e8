"""The must-show of the AttackBench protocol in one page: per norm, each attack's LO per model and its GO, and
where ``auto`` reaches LO >= 0.99 and a GO above every single attack's.

    python benchmarks/attackbench_summary.py [--budget 1000] [--n 500]

Reads benchmarks/results/attackbench-NORM-qQ-nN/report.json (written by benchmarks/attackbench_budget.py) for
every norm that has one and writes benchmarks/results/attackbench-qQ-nN-summary.md; re-draws each model's
robust-accuracy plot there from its distances.json with the current plotting code (the run may have drawn them with
an older one).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from edgewise.eval.benchmark import BEST
from edgewise.eval.report import plot_curves, write_text_atomic

RESULTS = Path(__file__).parent / "results"
NORMS = ("l2", "linf", "l1", "l0")
TARGET = 0.99


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def norm_section(norm: str, report: dict[str, Any]) -> tuple[list[str], dict[str, float]]:
    """The LO table of one norm (attacks × models, GO last) and the attacks' GO."""
    models = list(report["models"])
    lo = {model: {row["attack"]: row["local_optimality"] for row in entry["rows"]}
          for model, entry in report["models"].items()}
    go = {row["attack"]: row["global_optimality"] for row in report["summary"]}
    counted = {row["attack"]: row["models"] for row in report["summary"]}
    lines = [f"## {norm}", "", "| attack | " + " | ".join(f"`{m}`" for m in models) + " | GO (models) |",
             "|---|" + "---|" * (len(models) + 1)]
    for attack in sorted(go, key=lambda name: -(go[name] or -1.0)):  # GO None (no LO defined) last
        cells = " | ".join(_fmt(lo[m].get(attack)) for m in models)
        lines.append(f"| {attack} | {cells} | {_fmt(go[attack])} ({counted[attack]}) |")
    if go.get("auto") is not None:
        rivals = {name: value for name, value in go.items() if name != "auto" and value is not None}
        best = max(rivals, key=lambda name: rivals[name])
        short = [f"`{m}` {_fmt(lo[m].get('auto'))}" for m in models if (lo[m].get("auto") or 0.0) < TARGET]
        lines += ["", f"auto: GO {go['auto']:.3f} vs the best single attack's {rivals[best]:.3f} ({best}): "
                  f"{'above' if go['auto'] > rivals[best] else 'NOT above'}; LO >= {TARGET} on "
                  f"{len(models) - len(short)} of {len(models)} models"
                  + (f" (short: {', '.join(short)})" if short else "") + "."]
    return [*lines, ""], go


def redraw_plots(folder: Path, distance: str) -> None:
    """robust_accuracy-MODEL.png of every model in ``folder``/distances.json."""
    stored = json.loads((folder / "distances.json").read_text())["distances"]
    for model, curves in stored.items():
        tensors = {label: torch.tensor([math.inf if d is None else d for d in values], dtype=torch.float64)
                   for label, values in curves.items()}
        plot_curves(folder / f"robust_accuracy-{model}.png", tensors, distance=distance,
                    title=f"{model}: {distance} attacks", reference=BEST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    suffix = f"q{args.budget}-n{args.n}"
    lines = [f"# AttackBench protocol, Q = {args.budget} passes per sample, n = {args.n}: LO per model, GO", "",
             "Written by `python benchmarks/attackbench_summary.py` from "
             f"`benchmarks/results/attackbench-NORM-{suffix}/report.json`. LO: local optimality against the "
             "per-sample best of every attack run on that model; GO: the mean LO over the models the attack ran on.",
             ""]
    overview = ["## GO per norm", "", "| norm | models | auto | best single attack (GO) |", "|---|---|---|---|"]
    sections: list[str] = []
    for norm in NORMS:
        path = RESULTS / f"attackbench-{norm}-{suffix}" / "report.json"
        if not path.is_file():
            continue
        report = json.loads(path.read_text())
        redraw_plots(path.parent, norm)
        section, go = norm_section(norm, report)
        sections += section
        rivals = {name: value for name, value in go.items() if name != "auto" and value is not None}
        best = max(rivals, key=lambda name: rivals[name])
        overview.append(f"| {norm} | {', '.join(report['models'])} | {_fmt(go.get('auto'))} | "
                        f"{best} ({rivals[best]:.3f}) |")
    out = RESULTS / f"attackbench-{suffix}-summary.md"
    write_text_atomic(out, "\n".join(lines + overview + [""] + sections))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
