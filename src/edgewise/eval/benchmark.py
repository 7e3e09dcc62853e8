"""The ALMA paper's evaluation protocol (sec. 4-5, Tables 1-2, figures) over models × attacks × budgets.

For every (model, attack, steps) cell: attack success rate, median distance (failures count as +inf, clean
errors as 0), forwards / backwards per sample, wall time. Per budget, the geometric mean over models of each
metric (the paper's summary; a median that is +inf on some model makes the mean undefined, "–" in the paper).
Per model: the best of all attacks (per sample, the smallest distance any attack found) and each attack's
optimality against it, and the robust-accuracy curves of all attacks on one plot.

Paired comparison: every other library's attack ``library:name`` run with edgewise's ``name`` at the same budget
is compared with it sample by sample (:func:`edgewise.eval.metrics.paired_ratio`: geometric mean of the ratio of
distances with its 95% interval, fractions smaller / larger), per model and pooled over models. Minimal attacks
such as ALMA are chaotic (a 10⁻⁴ change of a step size moves a median of 1,000 samples by ±0.5%), so two
implementations of the same algorithm can swap places in the medians of one run; the paired ratio and its
interval say whether one finds smaller perturbations than the other.

Optimality of an attack = area under the best-of-all robust-accuracy curve / area under the attack's curve, both
on the same grid [0, 1.05 × the largest finite distance found on that model]: 1 when the attack matches the best
at every budget ε, smaller when its curve lies above (distances larger, or failures).

Resumable: each cell runs through :func:`edgewise.eval.run_attack` with a folder per cell, so every finished
batch is saved atomically (write, then rename) and skipped on the next run; a finished cell is saved as one file
the same way and loaded instead of recomputed.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgewise.attacks import ATTACKS, distance_keyword
from edgewise.eval import metrics
from edgewise.eval.provenance import (
    check_record,
    describe_attack,
    edgewise_identity,
    fingerprint_model,
    fingerprint_tensor,
)
from edgewise.eval.result import AttackResult
from edgewise.eval.run import Attack, _save_atomic, run_attack
from edgewise.models.wrappers import BudgetModel, BudgetSpentError
from edgewise.validation import check_eval_mode

BEST = "best of all"
"""The label of the per-sample best over every attack of a model (AttackBench's reference) in curves and plots."""


def _run_budgeted(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, attack: Attack, budget: int,
                  distance: str, **options: Any) -> torch.Tensor:
    check_eval_mode(model)  # before BudgetModel's clean forward, which in train mode would update BatchNorm
    wrapped = BudgetModel(model, inputs, labels, budget=budget, distance=distance,
                          targeted=bool(options.get("targeted", False)), stop=True)
    with contextlib.suppress(BudgetSpentError):  # the budget is spent: the best points can no longer change
        attack(wrapped, inputs, labels, **options)
    return wrapped.best


def budgeted(attack: Attack, *, budget: int, distance: str) -> Attack:
    """``attack`` under AttackBench's protocol: the model it sees answers ``budget`` forward + backward passes per
    sample (:class:`~edgewise.models.wrappers.BudgetModel`), and what it returns per sample is the
    smallest-``distance`` successful point it queried (its last iterate does not count), or the input.

    A :func:`functools.partial` (so provenance sees the attack, budget and distance) with the wrapped attack's
    signature (so ``generator`` and ``targeted`` reach it as they would reach the attack).
    """
    bound = partial(_run_budgeted, attack=attack, budget=budget, distance=distance)
    bound.__signature__ = inspect.signature(attack)  # type: ignore[attr-defined]
    return bound


@dataclass(frozen=True)
class AttackSpec:
    """An attack of the benchmark: its name in the tables, how to build it for a number of steps, and the rounds
    of those steps it runs.

    ``build(steps)`` returns the callable ``(model, inputs, labels) -> adversarial``. An attack with a search
    (C&W's penalty weight, an ε search) runs ``rounds`` rounds of ``steps`` steps: its table label is
    "9×100" and its iterations 900.
    """

    name: str
    build: Callable[[int], Attack]
    rounds: int = 1
    min_steps: int = 1
    """The fewest steps per round it runs with (a baseline's ``min_steps``)."""

    def budget(self, steps: int) -> str:
        """The label of ``steps`` in the tables: "100", or "9×100" for an attack with rounds."""
        return str(steps) if self.rounds == 1 else f"{self.rounds}×{steps}"

    def iterations(self, steps: int) -> int:
        """The iterations per sample of ``steps`` steps per round."""
        return self.rounds * steps

    def within(self, iterations: int) -> int:
        """The steps per round that fit ``iterations`` per sample: under a query budget every round shares it,
        so a search of 10 rounds in 500 iterations gets 50 steps per round, not 500 of which one round fits."""
        return max(1, iterations // self.rounds)

    def steps_per_round(self, steps: int, budget: int | None) -> int:
        """The steps of each round for ``steps`` asked of the benchmark: all of them without a query budget (the
        ALMA paper's 9 × steps), shared among the rounds under one (:meth:`within`). Names the cell's folder too."""
        return steps if budget is None else self.within(steps)


FIXED_DISTANCES = {"ddn": "l2"}
"""The distance minimized by each registry attack that takes neither ``distance`` nor ``norm``."""


def edgewise_attack(spec: str, *, distance: str) -> AttackSpec:
    """``"ddn"``, ``"fmn-l2"``, ``"alma-l1"``, ``"cw-l2"``: an attack of the registry, the suffix bound to the
    ``distance`` or ``norm`` it takes (``"auto"``: the portfolio with a budget of 2 × steps passes per sample,
    ``attacks.auto.auto_steps``). Without a suffix, an attack that takes one gets ``distance``. C&W's budget
    is its ``binary_search_steps`` (9) × steps, labelled "9×steps" like the baselines with a search. An attack of
    a fixed distance (DDN: ℓ2) is refused for another ``distance``, as a baseline of another distance is.
    """
    name, _, suffix = spec.partition("-")
    if name not in ATTACKS:
        raise ValueError(f"attack {spec!r} is not in the registry {sorted(ATTACKS)} (nor a baseline "
                         "'library:attack'); it may not be written yet")
    function = ATTACKS[name]
    parameters = inspect.signature(function).parameters
    keyword = distance_keyword(function)
    if suffix and keyword is None:
        raise ValueError(f"attack {spec!r}: {name!r} minimizes a fixed distance and takes no suffix")
    if keyword is None and FIXED_DISTANCES.get(name) != distance:
        raise ValueError(f"attack {spec!r} minimizes {FIXED_DISTANCES.get(name)!r} but --distance is "
                         f"{distance!r}")
    chosen = suffix or distance
    if keyword is not None and chosen != distance:
        raise ValueError(f"attack {spec!r} minimizes {chosen!r} but --distance is {distance!r}")
    bound = {keyword: chosen} if keyword is not None else {}
    # An attack with a search over its penalty weight (C&W) runs ``steps`` per round: its budget is rounds × steps.
    search = parameters.get("binary_search_steps")
    rounds = int(search.default) if search is not None else 1
    return AttackSpec(spec, lambda steps: partial(function, steps=steps, **bound), rounds)


def baseline_attack(spec: str, *, distance: str) -> AttackSpec:
    """``"adv-lib:ddn"``: an attack of another library (``edgewise.eval.baselines``); raises
    ``MissingLibraryError`` (one line) when the library is not installed."""
    from edgewise.eval.baselines import BASELINES, load_baseline

    if spec not in BASELINES:
        raise ValueError(f"baseline must be one of {sorted(BASELINES)}, got {spec!r}")
    entry = BASELINES[spec]
    if entry.distance != distance:
        raise ValueError(f"baseline {spec!r} minimizes {entry.distance!r} but --distance is "
                         f"{distance!r}")
    load_baseline(spec, steps=entry.min_steps)  # fails now, in one line, if the library is missing
    return AttackSpec(spec, lambda steps: load_baseline(spec, steps=steps), entry.rounds, entry.min_steps)


def resolve(spec: str, *, distance: str) -> AttackSpec:
    """An attack name of the command line: ``library:attack`` is a baseline, anything else edgewise's own."""
    return baseline_attack(spec, distance=distance) if ":" in spec else edgewise_attack(spec, distance=distance)


def cell_folder(out: Path, model: str, attack: str, steps: int, budget: int | None) -> Path:
    safe = attack.replace(":", "_").replace("/", "_")
    return out / "cells" / model / safe / (f"steps-{steps}" if budget is None else f"budget-{budget}-steps-{steps}")


def run_cell(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, attack: Attack, folder: Path, *,
             batch_size: int, seed: int, progress: bool) -> tuple[AttackResult, bool]:
    """One (model, attack, steps) cell: loaded if it finished before, else run (resuming its batches) and saved.

    The folder's ``cell.json`` records what produced the cell (model fingerprint, attack description with its
    budget, seed, batch size): a cell of another run is a ``ValueError`` naming the first differing field, never
    a stale result. The samples are not in that record: the finished cell's file is named by the digests of its
    inputs and labels, and other samples (a larger ``--n``) go through ``run_attack``, whose batch records reuse
    the finished batches of the same samples and compute the rest. Returns the result and whether it was computed
    now.
    """
    record = {"edgewise": edgewise_identity(), "model": fingerprint_model(model), "attack": describe_attack(attack),
              "seed": seed, "batch_size": batch_size}
    check_record(folder / "cell.json", record, label=f"benchmark cell {folder}")
    samples = fingerprint_tensor(torch.cat([inputs.flatten().double().cpu(), labels.double().cpu()]))
    path = folder / f"result-{samples[:16]}-n{len(inputs)}-b{batch_size}.pt"
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        return AttackResult(**stored), False
    result = run_attack(model, inputs, labels, attack, batch_size=batch_size, seed=seed, resume_dir=folder,
                        progress=progress)
    _save_atomic(vars(result), path)
    return result, True


def geometric_mean(values: Sequence[float]) -> float | None:
    """Geometric mean of positive values; None when a value is inf or nan (undefined, "–" in the paper).

    A zero value (e.g. 0% success) makes the mean 0.
    """
    if not values or any(not math.isfinite(v) for v in values):
        return None
    if any(v <= 0 for v in values):
        return 0.0
    return math.exp(sum(math.log(v) for v in values) / len(values))


def optimality(distances: torch.Tensor, best: torch.Tensor, grid: torch.Tensor) -> float:
    """Area under the best-of-all robust-accuracy curve / area under this attack's, on ``grid``."""
    mine = metrics.area_under_curve(grid, metrics.robust_accuracy_curve(distances, grid))
    ideal = metrics.area_under_curve(grid, metrics.robust_accuracy_curve(best, grid))
    return ideal / mine if mine > 0 else 1.0


def cell_row(result: AttackResult, *, distance: str, attack: AttackSpec, steps: int) -> dict[str, Any]:
    """The numbers of one table row."""
    summary = result.summary(distance=distance)
    iterations = attack.iterations(steps)
    return {
        "attack": attack.name, "steps": steps, "budget": attack.budget(steps), "n": summary["n"],
        "clean_accuracy": summary["clean_accuracy"], "success_rate": summary["success_rate"],
        "median_distance": summary["median_distance"], "mean_distance": summary["mean_distance"],
        "forwards_per_sample": summary["forwards_per_sample"],
        "backwards_per_sample": summary["backwards_per_sample"],
        "failed_verification": summary["failed_verification"], "seconds": summary["seconds"],
        "ms_per_sample_iteration": 1000 * summary["seconds"] / max(summary["n"] * iterations, 1),
    }


def model_summary(results: Mapping[tuple[str, int], AttackResult], *, distance: str) -> dict[str, Any]:
    """Best of all attacks on one model (AttackBench's reference a*), each attack's optimality (area ratio) and
    local optimality (AttackBench's LO on [0, ε₀]), and the common ε grid."""
    stacked = torch.stack([r.distances[distance].double() for r in results.values()])
    best = metrics.reference_distances(list(stacked))
    reference = best[torch.isfinite(best)]
    finite = stacked[torch.isfinite(stacked)]
    top = float(finite.max()) * 1.05 if finite.numel() and float(finite.max()) > 0 else 1.0
    grid = torch.linspace(0, top, 501, dtype=torch.float64)
    return {
        "best": best, "grid": grid,
        "best_success_rate": float(torch.isfinite(best).double().mean()),
        "best_median_distance": metrics.median_distance(best),
        "optimality": {key: optimality(r.distances[distance], best, grid) for key, r in results.items()},
        "eps0": float(reference.max()) if reference.numel() else math.nan,
        "local_optimality": {key: metrics.local_optimality(r.distances[distance].double(), best,
                                                           clean_accuracy=r.summary(distance=distance)["clean_accuracy"])
                             for key, r in results.items()},
    }


def paired_rows(distances: Mapping[tuple[str, int], torch.Tensor]) -> list[dict[str, Any]]:
    """Each library attack ``library:name`` against edgewise's ``name`` at the same steps, sample by sample."""
    rows = []
    for (name, steps), theirs in distances.items():
        _, separator, ours = name.partition(":")
        if not separator or (ours, steps) not in distances:
            continue
        stats = metrics.paired_ratio(distances[(ours, steps)], theirs)
        if stats is not None:
            rows.append({"attack": ours, "baseline": name, "steps": steps, **stats})
    return rows


def summarize(rows: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per (attack, steps): the geometric mean over models of each metric (ALMA paper, Tables 1-2), and the
    global optimality, the mean of the local optimality over models (AttackBench)."""
    keys: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for model_rows in rows.values():
        for row in model_rows:
            keys.setdefault((row["attack"], row["steps"]), []).append(row)
    out = []
    for (attack, steps), group in keys.items():
        out.append({"attack": attack, "steps": steps, "budget": group[0]["budget"], "models": len(group),
                    **{f"geometric_mean_{k}": geometric_mean([r[k] for r in group])
                       for k in ("success_rate", "median_distance", "forwards_per_sample",
                                 "backwards_per_sample", "ms_per_sample_iteration")},
                    "global_optimality": metrics.global_optimality([r["local_optimality"] for r in group])})
    return out


def check_steps(attacks: Sequence[AttackSpec], steps: Sequence[int], budget: int | None) -> None:
    """Each attack's steps per round must be at least its ``min_steps``, and its cells distinct: two ``steps``
    that give an attack the same steps per round (``2,2``, or C&W's ``10,11`` shared among 9 rounds under a
    budget) would be one cell counted twice (a summary of one model reported "models: 2")."""
    for attack in attacks:
        per_round = [attack.steps_per_round(total, budget) for total in steps]
        if min(per_round) < attack.min_steps:
            given = f"--steps {min(steps)}" if budget is None else f"--budget {budget}"
            raise ValueError(f"{given} gives {attack.name} {min(per_round)} steps per round of its {attack.rounds}; "
                             f"it needs at least {attack.min_steps}")
        repeated = sorted(value for value, count in Counter(per_round).items() if count > 1)
        if repeated:
            shared = "" if budget is None else f" (steps per round of its {attack.rounds} rounds under budget {budget})"
            raise ValueError(f"--steps {','.join(map(str, steps))} give {attack.name} the same steps "
                             f"{', '.join(map(str, repeated))}{shared} more than once: give each budget once")


def benchmark(models: Mapping[str, nn.Module], data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
              attacks: Sequence[AttackSpec], steps: Sequence[int], *, distance: str, out: str | Path,
              budget: int | None = None, batch_size: int = 256, seed: int = 0, progress: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every model × attack × steps cell (resumably, under ``out/cells``) and return the report's numbers.

    With ``budget`` every attack runs under AttackBench's protocol (:func:`budgeted`: ``budget`` forward +
    backward passes per sample, the best successful point seen during the run), and ``steps`` are its
    iterations per sample, shared among its rounds (:meth:`AttackSpec.within`).

    ``data[model]`` are the inputs (in the model's channel layout) and labels. ``log`` gets one line per cell.
    Returns ``{"models": {model: {"rows": [...], "best_success_rate", "best_median_distance", "curves":
    {label: distances}}}, "summary": [...]}`` (``curves`` holds tensors, for the plots).
    """
    out = Path(out)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise ValueError(f"budget must be a positive int (forward + backward passes per sample), got {budget!r}")
    check_steps(attacks, steps, budget)
    report: dict[str, Any] = {"models": {}, "distance": distance, "budget": budget}
    all_rows: dict[str, list[dict[str, Any]]] = {}
    pooled: dict[tuple[str, int], list[torch.Tensor]] = {}
    for model_name, model in models.items():
        inputs, labels = data[model_name]
        results: dict[tuple[str, int], AttackResult] = {}
        labels_of: dict[tuple[str, int], str] = {}
        rows = []
        for attack in attacks:
            for total in steps:
                iterations = attack.steps_per_round(total, budget)
                folder = cell_folder(out, model_name, attack.name, iterations, budget)
                built = attack.build(iterations)
                if budget is not None:
                    built = budgeted(built, budget=budget, distance=distance)
                result, computed = run_cell(model, inputs, labels, built, folder,
                                            batch_size=batch_size, seed=seed, progress=progress)
                results[(attack.name, iterations)] = result
                labels_of[(attack.name, iterations)] = f"{attack.name} {attack.budget(iterations)}"
                row = cell_row(result, distance=distance, attack=attack, steps=iterations)
                rows.append(row)
                if log is not None:
                    log(f"{model_name} {attack.name} {row['budget']}: {'ran' if computed else 'loaded'}, "
                        f"success {100 * row['success_rate']:.2f}%, median {distance} "
                        f"{row['median_distance']:.4f}, {row['seconds']:.1f} s")
        best = model_summary(results, distance=distance)
        for row in rows:
            row["optimality"] = best["optimality"][(row["attack"], row["steps"])]
            row["local_optimality"] = best["local_optimality"][(row["attack"], row["steps"])]
        all_rows[model_name] = rows
        distances = {key: r.distances[distance] for key, r in results.items()}
        curves = {labels_of[key]: values for key, values in distances.items()}
        curves[BEST] = best["best"]
        for key, values in distances.items():
            pooled.setdefault(key, []).append(values)
        report["models"][model_name] = {
            "rows": rows, "best_success_rate": best["best_success_rate"],
            "best_median_distance": best["best_median_distance"], "eps0": best["eps0"], "curves": curves,
            "paired": paired_rows(distances)}
    report["summary"] = summarize(all_rows)
    report["paired"] = paired_rows({key: torch.cat(parts) for key, parts in pooled.items()})
    return report



def _cell(value: float | None, fmt: str) -> str:
    return "–" if value is None or not math.isfinite(value) else format(value, fmt)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _paired_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["| edgewise | other library | steps | pairs | distance ratio, geometric mean [95% interval] | "
             "edgewise smaller | edgewise larger |", "|---|---|---|---|---|---|---|"]
    return lines + [f"| {r['attack']} | {r['baseline']} | {r['steps']} | {r['pairs']} | "
                    f"{metrics.format_ratio(r)} | "
                    f"{_pct(r['smaller'])}% | {_pct(r['larger'])}% |" for r in rows]


def markdown(report: dict[str, Any], *, plots: Mapping[str, str], header: str) -> str:
    """``report.md``: the summary over models, then one table per model with its plot."""
    distance = report["distance"]
    queries = report.get("budget")
    protocol = (f"every attack limited to {queries} forward + backward passes per sample (AttackBench's protocol; "
                "its distance per sample is the best successful point it queried)" if queries else
                "no query budget: each attack runs its steps and is scored on the point it returns")
    lines = [f"# edgewise benchmark ({distance})", "", header, "", protocol + ".", "",
             f"## Geometric mean over {len(report['models'])} model(s), global optimality", "",
             f"| attack | steps | models | ASR (%) | median {distance} | forwards / backwards | "
             "ms per sample·iteration | GO |", "|---|---|---|---|---|---|---|---|"]
    for row in report["summary"]:
        lines.append(f"| {row['attack']} | {row['budget']} | {row['models']} | "
                     f"{_pct(row['geometric_mean_success_rate'])} | "
                     f"{_cell(row['geometric_mean_median_distance'], '.4f')} | "
                     f"{_cell(row['geometric_mean_forwards_per_sample'], '.0f')} / "
                     f"{_cell(row['geometric_mean_backwards_per_sample'], '.0f')} | "
                     f"{_cell(row['geometric_mean_ms_per_sample_iteration'], '.3f')} | "
                     f"{_cell(row['global_optimality'], '.3f')} |")
    if report["paired"]:
        lines += ["", "Paired with the other libraries, samples of all models pooled (per sample, edgewise's "
                  "distance / the library's, over the samples both attacked successfully):", "",
                  *_paired_table(report["paired"])]
    for model_name, entry in report["models"].items():
        rows = entry["rows"]
        lines += ["", f"## {model_name}", "", f"clean accuracy {_pct(rows[0]['clean_accuracy'])}% on n = "
                  f"{rows[0]['n']}; best of all attacks: ASR {_pct(entry['best_success_rate'])}%, median "
                  f"{distance} {_cell(entry['best_median_distance'], '.4f')}, ε₀ {_cell(entry['eps0'], '.4f')}",
                  "", f"| attack | steps | ASR (%) | median {distance} | mean {distance} | forwards / backwards | "
                  "wall time (s) | ms per sample·iteration | optimality | LO | failed verification |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['attack']} | {row['budget']} | {_pct(row['success_rate'])} | "
                         f"{_cell(row['median_distance'], '.4f')} | {_cell(row['mean_distance'], '.4f')} | "
                         f"{row['forwards_per_sample']:.0f} / {row['backwards_per_sample']:.0f} | "
                         f"{row['seconds']:.1f} | {row['ms_per_sample_iteration']:.3f} | "
                         f"{row['optimality']:.3f} | {_cell(row['local_optimality'], '.3f')} | "
                         f"{row['failed_verification']} |")
        if entry["paired"]:
            lines += ["", *_paired_table(entry["paired"])]
        lines += ["", f"![robust accuracy, {model_name}]({plots[model_name]})"]
    lines += ["", "ASR: fraction of all n samples with a verified adversarial (clean errors count, at distance 0); "
              "median over all n with failures as +inf (\"–\" when undefined); optimality: area under the "
              "best-of-all robust-accuracy curve / area under the attack's (1 = as good as the best at every ε); "
              "LO: AttackBench's local optimality (acc·ε₀ − AUREC_attack) / (acc·ε₀ − AUREC_best), AUREC the area "
              "under the robust-accuracy curve on [0, ε₀], ε₀ the largest finite best-of-all distance; GO: the mean "
              "LO over models. forwards / backwards: passes the model computed (under a budget, passes past it "
              "are not answered)."]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: str | Path, *, arguments: dict[str, Any],
                 env: dict[str, Any]) -> list[Path]:
    """Write ``report.json``, ``report.md`` and one ``robust_accuracy-MODEL.png`` per model (atomically)."""
    from edgewise.eval.report import plot_curves, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = {}
    for model_name, entry in report["models"].items():
        name = f"robust_accuracy-{model_name}.png"
        tmp = out / f"tmp-{name}"
        plot_curves(tmp, entry["curves"], distance=report["distance"],
                    title=f"{model_name}: {report['distance']} attacks", reference=BEST)
        os.replace(tmp, out / name)
        plots[model_name] = name
    header = (f"n = {arguments.get('n')} samples ({arguments.get('data')}), models {', '.join(report['models'])}; "
              f"torch {env['torch']}, {env['device']}, {env['threads']} thread(s), commit {env['git_commit']}")
    write_text_atomic(out / "report.md", markdown(report, plots=plots, header=header))
    numbers = {"distance": report["distance"], "budget": report.get("budget"), "summary": report["summary"],
               "paired": report["paired"],
               "models": {m: {k: v for k, v in e.items() if k != "curves"} for m, e in report["models"].items()},
               "plots": plots, "arguments": arguments, "environment": env}
    text = json.dumps(numbers, indent=1, default=float).replace("Infinity", "null").replace("NaN", "null")
    write_text_atomic(out / "report.json", text + "\n")
    return [out / "report.md", out / "report.json", *(out / p for p in plots.values())]
