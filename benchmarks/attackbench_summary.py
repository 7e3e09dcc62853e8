"""The must-show of the AttackBench protocol in one page: per norm, each attack's LO per model and its GO, and
where ``auto`` reaches LO >= 0.99 and a GO above every single attack's.

    python benchmarks/attackbench_summary.py [--budget 1000] [--n 500]
        [--replacements quantized,lenet-quantized,lenet,lenet-kwta,more,tiny,rs,lenetv2]
        [--additions fab-auto,swap-auto,local-auto] [--base B --name NAME]

Reads benchmarks/results/attackbench-NORM-qQ-nN/report.json (written by benchmarks/attackbench_budget.py) for
every norm that has one and writes benchmarks/results/attackbench-qQ-nN-summary.md; re-draws each model's
robust-accuracy plot there from its distances.json with the current plotting code (the run may have drawn them with
an older one). A later run of some models (``--name NORM-qQ-nN-R`` for each R of ``--replacements``) replaces
those models' rows, or adds a model: the summary names the commit each model's rows come from. A run of some
attacks on models already there (``--name NORM-qQ-nN-A`` for each A of ``--additions``, on the same images) adds
those attacks to the models' rows, or replaces the same attacks' (a newer ``auto``): every LO of such a model is
recomputed against the per-sample best of the merged attacks, and its plot is drawn from them into
benchmarks/results/attackbench-qQ-nN-summary/. ``--base B`` starts from the runs named NORM-qQ-nN-B instead (the
replacements and additions are then named after it, NORM-qQ-nN-R as before) and ``--name NAME`` writes
attackbench-qQ-nN-NAME-summary.md: another set of models, such as the larger CNNs, in a summary of its own.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from edgewise.eval.benchmark import BEST
from edgewise.eval.metrics import global_optimality, local_optimality, reference_distances
from edgewise.eval.report import plot_curves, write_text_atomic

RESULTS = Path(__file__).parent / "results"
NORMS = ("l2", "linf", "l1", "l0")
TARGET = 0.99


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def comparable(go: dict[str, float], counted: dict[str, int]) -> dict[str, float]:
    """The GO of every other attack over as many models as ``auto``'s (a GO over fewer models is another mean;
    such an attack is compared per model, in the LO table); an older ``auto`` (``auto@COMMIT``) is no rival."""
    return {name: value for name, value in go.items()
            if name.split("@")[0] != "auto" and counted[name] == counted.get("auto")}


def optimality(report: dict[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, int]]:
    """LO per model and attack, and each attack's GO with the number of models it is over. A model where no attack
    found an adversarial beyond the clean errors (ε₀ = 0: every LO undefined, NaN in attackbenchlib's mean) is left
    out of GO, which is then the mean over the other models the attack ran on."""
    lo = {model: {row["attack"]: row["local_optimality"] for row in entry["rows"]
                  if row["local_optimality"] is not None}
          for model, entry in report["models"].items()}
    attacks = {row["attack"] for entry in report["models"].values() for row in entry["rows"]}
    over = {attack: [values[attack] for values in lo.values() if attack in values] for attack in attacks}
    go = {attack: global_optimality(values) for attack, values in over.items() if values}
    return lo, go, {attack: len(values) for attack, values in over.items()}


Columns = dict[str, list[float | None]]


def merged(folders: list[Path]) -> tuple[dict[str, Any], dict[str, str], dict[str, Columns]]:
    """The first folder's report with the models of each later one replaced by (or added from) that one's rows,
    the commit each model's rows come from, and each model's per-sample distances (distances.json)."""
    report: dict[str, Any] = {"models": {}}
    commits: dict[str, str] = {}
    columns: dict[str, Columns] = {}
    for folder in folders:
        part = json.loads((folder / "report.json").read_text())
        commit = part["environment"].get("git_commit", "?")[:7]
        for entry in part["models"].values():
            entry["rows"] = [{**row, "commit": commit} for row in entry["rows"]]
        report["models"].update(part["models"])
        commits.update(dict.fromkeys(part["models"], commit))
        columns.update(_distances(folder))
    return report, commits, columns


def _distances(folder: Path) -> dict[str, Columns]:
    stored = json.loads((folder / "distances.json").read_text())
    return {model: {"test_indices": stored["test_indices"], **curves} for model, curves in stored["distances"].items()}


def _tensor(values: list[float | None]) -> torch.Tensor:
    return torch.tensor([math.inf if d is None else d for d in values], dtype=torch.float64)


def _older(row: dict[str, Any], taken: set[str]) -> str:
    """The name of an attack's earlier run once a newer run takes its name: ``NAME@COMMIT``, the commit it ran
    with (``NAME@COMMIT-2``, … where that is taken already)."""
    label, count = f"{row['attack']}@{row['commit']}", 1
    while label in taken:
        count += 1
        label = f"{row['attack']}@{row['commit']}-{count}"
    return label


def add_attacks(report: dict[str, Any], commits: dict[str, str], columns: dict[str, Columns],
                folder: Path) -> list[str]:
    """The attacks of ``folder``'s run added to the models of ``report`` it ran on, in place; an attack already
    there (an older ``auto``) stays too, renamed ``NAME@COMMIT`` by :func:`_older`, so the
    reference never loses a point. Every LO of those models is recomputed against the per-sample best of the merged
    attacks. Returns the models changed. A run on other images than the model's rows is a ValueError."""
    part = json.loads((folder / "report.json").read_text())
    commit = part["environment"].get("git_commit", "?")[:7]
    extra = _distances(folder)
    changed = []
    for model, entry in part["models"].items():
        if model not in report["models"]:
            continue
        if extra[model]["test_indices"] != columns[model]["test_indices"]:
            raise ValueError(f"{folder}: model {model!r} ran on other test images than its rows in the summary")
        names = {row["attack"] for row in entry["rows"]}
        taken = {row["attack"] for row in report["models"][model]["rows"]}
        older = {row["attack"]: _older(row, taken) for row in report["models"][model]["rows"]
                 if row["attack"] in names}
        rows = [{**row, "attack": older[row["attack"]]} if row["attack"] in names else row
                for row in report["models"][model]["rows"]] + [{**row, "commit": commit} for row in entry["rows"]]
        kept = {(f"{older[label.rsplit(' ', 1)[0]]} {label.rsplit(' ', 1)[1]}"
                 if label.rsplit(" ", 1)[0] in names else label): values
                for label, values in columns[model].items() if label != BEST}
        kept.update({label: values for label, values in extra[model].items() if label not in (BEST, "test_indices")})
        curves = {label: _tensor(values) for label, values in kept.items() if label != "test_indices"}
        best = reference_distances(list(curves.values()))
        for row in rows:
            row["local_optimality"] = local_optimality(curves[f"{row['attack']} {row['budget']}"], best,
                                                       clean_accuracy=row["clean_accuracy"])
        report["models"][model]["rows"] = rows
        columns[model] = {**kept, BEST: [None if math.isinf(d) else d for d in best.tolist()]}
        commits[model] += f" (+ {', '.join(sorted(names))} of {commit})"
        changed.append(model)
    return changed


def norm_section(norm: str, report: dict[str, Any],
                 commits: dict[str, str]) -> tuple[list[str], dict[str, float], dict[str, int]]:
    """The LO table of one norm (attacks × models, GO last), the attacks' GO and the models each GO is over."""
    models = list(report["models"])
    lo, go, counted = optimality(report)
    degenerate = [m for m in models if not lo[m]]
    lines = [f"## {norm}", "", "Rows from commit: " + ", ".join(f"`{m}` {commits[m]}" for m in models) + ".", "",
             "| attack | " + " | ".join(f"`{m}`" for m in models) + " | GO (models) |",
             "|---|" + "---|" * (len(models) + 1)]
    for attack in sorted(counted, key=lambda name: -go.get(name, -1.0)):
        cells = " | ".join(_fmt(lo[m].get(attack)) for m in models)
        lines.append(f"| {attack} | {cells} | {_fmt(go.get(attack))} ({counted[attack]}) |")
    if degenerate:
        lines += ["", f"LO undefined on {', '.join(f'`{m}`' for m in degenerate)}: no attack found an adversarial "
                  "example beyond the clean errors (ε₀ = 0); GO is over the other models."]
    if "auto" in go:
        rivals = comparable(go, counted)
        best = max(rivals, key=lambda name: rivals[name])
        scored = [m for m in models if m not in degenerate]
        short = [f"`{m}` {_fmt(lo[m].get('auto'))}" for m in scored if lo[m].get("auto", 0.0) < TARGET]
        lines += ["", f"auto: GO {go['auto']:.3f} vs the best single attack's {rivals[best]:.3f} ({best}): "
                  f"{'above' if go['auto'] > rivals[best] else 'NOT above'}; LO >= {TARGET} on "
                  f"{len(scored) - len(short)} of {len(scored)} models"
                  + (f" (short: {', '.join(short)})" if short else "") + "."]
    return [*lines, ""], go, counted


def redraw_plots(folder: Path, distance: str) -> None:
    """robust_accuracy-MODEL.png of every model in ``folder``/distances.json."""
    for model, curves in _distances(folder).items():
        draw(folder / f"robust_accuracy-{model}.png", model, curves, distance)


def draw(path: Path, model: str, curves: Columns, distance: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {label: _tensor(values) for label, values in curves.items() if label != "test_indices"}
    plot_curves(path, tensors, distance=distance, title=f"{model}: {distance} attacks", reference=BEST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--replacements", default="quantized,lenet-quantized,lenet,lenet-kwta,more,tiny,rs,lenetv2",
                        help="comma list R: runs named NORM-qQ-nN-R replace their models' rows ('' for none)")
    parser.add_argument("--additions", default="fab-auto,swap-auto,local-auto,lazy-swap-auto",
                        help="comma list A: runs named NORM-qQ-nN-A add their attacks to (or replace them in) "
                             "their models' rows")
    parser.add_argument("--base", default="", help="the main runs are NORM-qQ-nN-BASE ('' : NORM-qQ-nN)")
    parser.add_argument("--name", default="", help="writes attackbench-qQ-nN-NAME-summary.md ('' : …-summary.md)")
    args = parser.parse_args()
    suffix = f"q{args.budget}-n{args.n}"
    base = f"{suffix}-{args.base}" if args.base else suffix
    summary = f"attackbench-{suffix}{f'-{args.name}' if args.name else ''}-summary"
    lines = [f"# AttackBench protocol, Q = {args.budget} passes per sample, n = {args.n}: LO per model, GO", "",
             "Written by `python benchmarks/attackbench_summary.py` from "
             f"`benchmarks/results/attackbench-NORM-{base}/report.json`. LO: local optimality against the "
             "per-sample best of every attack run on that model; GO: the mean LO over the models the attack ran on; "
             "auto is compared by GO with the attacks that ran on all its models, and per model (LO) with the others.",
             ""]
    overview = ["## GO per norm", "", "| norm | models | auto | best single attack (GO) |", "|---|---|---|---|"]
    sections: list[str] = []
    for norm in NORMS:
        main_folder = RESULTS / f"attackbench-{norm}-{base}"
        if not (main_folder / "report.json").is_file():
            continue
        folders = [main_folder, *(folder for name in filter(None, args.replacements.split(","))
                                  if ((folder := RESULTS / f"attackbench-{norm}-{suffix}-{name}") / "report.json")
                                  .is_file())]
        report, commits, columns = merged(folders)
        for folder in folders:
            redraw_plots(folder, norm)
        for name in filter(None, args.additions.split(",")):
            if ((folder := RESULTS / f"attackbench-{norm}-{suffix}-{name}") / "report.json").is_file():
                for model in add_attacks(report, commits, columns, folder):
                    draw(RESULTS / summary / f"robust_accuracy-{norm}-{model}.png", model, columns[model], norm)
        section, go, counted = norm_section(norm, report, commits)
        sections += section
        rivals = comparable(go, counted)
        best = max(rivals, key=lambda name: rivals[name])
        overview.append(f"| {norm} | {', '.join(report['models'])} | {_fmt(go.get('auto'))} | "
                        f"{best} ({rivals[best]:.3f}) |")
    out = RESULTS / f"{summary}.md"
    write_text_atomic(out, "\n".join(lines + overview + [""] + sections))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
