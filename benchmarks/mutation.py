"""Mutation score of the core modules: mutmut runs each module's mutants against that module's fast tests.

    python benchmarks/mutation.py [--modules penalties,losses,...] [--sample K --seed S] [--max-children 1]
                                  [--report-only]

Runs from the repository root (``make mutation``). Each module gets its own work folder build/mutation/MODULE
(links to src/ and tests/, and pyproject.toml with ``[tool.mutmut]`` extended by the file to mutate and the
module's tests, ``TESTS`` below); mutmut copies src/ and tests/ to its mutants/ folder, records which of those
tests call each function and runs every mutant only against them, stopping at the first failure. A module whose
run was interrupted resumes where it stopped; functions changed since are tested again. Each module's wall time
is recorded.

With ``--sample K`` a module with more than K mutants runs only a uniform random sample of K of them (seeded by
``--seed``, drawn from the sorted names of all the module's mutants, so the same seed gives the same sample); its
score is a sample estimate, reported with a 95% Wilson interval, never as a full run. Mutants of the sample that
an earlier run already checked are not run again.

Writes benchmarks/results/mutation_report.{md,json}. A module measured before and not in ``--modules`` keeps its
earlier entry. The score is killed / (mutants − equivalent), where the equivalent mutants are those listed, with
the reason, in benchmarks/results/mutation_survivors.md (a line holding the mutant's name in backticks and the
word "equivalent"). Mutants of code that runs when the module is imported (mutmut switches mutants on at call
time, after the import) are applied to the source by hand and the module's tests run on them; those that fail
are listed there on a line with "killed by hand" and count as killed. ``--rerun-survivors`` runs again only the
survivors of each module's last run (after new tests were added).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import math
import random
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REVIEW = RESULTS / "mutation_survivors.md"
MUTMUT = (sys.executable, "-m", "mutmut")

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
# Per module (dotted, under edgewise), smallest and most used first: the fast tests that check it.
TESTS = {
    "penalties": ["tests/test_penalties.py", "tests/test_penalties_values.py"],
    "losses": ["tests/test_losses.py"],
    "distances.lp": ["tests/distances/test_lp.py", "tests/distances/test_conformance.py"],
    "eval.metrics": ["tests/eval/test_metrics_values.py", "tests/eval/test_metrics.py",
                     "tests/eval/test_metrics_median.py"],
    "eval.sanity": ["tests/eval/test_sanity_thresholds.py", "tests/eval/test_sanity.py",
                    "tests/eval/test_sanity_submodules.py"],
    "training.recipes": ["tests/training/test_recipes.py"],
    "projections": ["tests/test_projections.py"],
    "attacks.ddn": ["tests/attacks/test_ddn.py", "tests/attacks/test_quality_vs_adv_lib.py"],
    "attacks.fmn": ["tests/attacks/test_fmn.py"],
    "attacks.alma": ["tests/attacks/test_alma.py", "tests/attacks/test_alma_schedule.py"],
    "attacks.cw": ["tests/attacks/test_cw.py"],
    "attacks.pgd": ["tests/attacks/test_pgd.py"],
    "attacks.sigma_zero": ["tests/attacks/test_sigma_zero.py"],
    "attacks.minimal": ["tests/attacks/test_minimal.py", "tests/attacks/test_minimal_options.py"],
    "attacks.apgd": ["tests/attacks/test_apgd.py", "tests/attacks/test_apgd_options.py"],
    "attacks.minmax.apgda": ["tests/attacks/minmax/test_apgda.py"],
    # not tests/eval/test_distributed.py: its second process imports the unmutated package, whose source digest
    # then differs from the first process's (the run is refused)
    "eval.run": ["tests/eval/test_run_attack.py", "tests/eval/test_run_attack_options.py",
                 "tests/eval/test_provenance.py"],
    "attacks.auto": ["tests/attacks/test_auto.py"],
    # not the two-process test: its worker processes run the unmutated package, so it would compare a mutant
    # with the original code
    "training.loop": ["tests/training/test_loop_metrics.py", "tests/training/test_loop.py",
                      "tests/training/test_loop_modes.py", "--deselect",
                      "tests/training/test_loop.py::test_two_processes_give_the_weights_of_one"],
    "training.multinorm": ["tests/training/test_recipes.py"],
    "attacks.minmax.ensemble": ["tests/attacks/minmax/test_ensemble.py", "tests/attacks/minmax/test_wrappers.py"],
    "attacks.minmax.metrics": ["tests/attacks/minmax/test_metrics.py", "tests/attacks/minmax/test_plots.py"],
    "attacks.minmax.transforms": ["tests/attacks/minmax/test_transforms.py",
                                  "tests/attacks/minmax/test_wrappers.py"],
    "attacks.minmax.universal": ["tests/attacks/minmax/test_universal.py", "tests/attacks/minmax/test_wrappers.py"],
    "distances.ssim": ["tests/distances/test_ssim.py", "tests/distances/test_conformance.py"],
    "distances.ciede2000": ["tests/distances/test_ciede2000.py", "tests/distances/test_conformance.py"],
    "distances.lpips": ["tests/distances/test_lpips.py", "tests/distances/test_conformance.py"],
    "distances.registry": ["tests/distances/test_registry.py", "tests/distances/test_lp.py",
                           "tests/distances/test_conformance.py"],
    "attacks.base": ["tests/attacks/test_base.py", "tests/test_bad_input.py", "tests/attacks/test_conformance.py",
                     "tests/attacks/test_ddn.py",
                     "tests/attacks/minmax/test_apgda.py", "tests/attacks/test_cw.py"],
    "eval.result": ["tests/eval/test_result.py", "tests/eval/test_run_attack.py", "tests/eval/test_metrics_median.py",
                    "tests/eval/test_distributed.py", "--deselect",
                    "tests/eval/test_distributed.py::test_two_processes_give_the_per_sample_results_of_one"],
    # the torchrun test left out for the reason given at eval.run
    "eval.distributed": ["tests/eval/test_distributed.py", "--deselect",
                         "tests/eval/test_distributed.py::test_two_processes_give_the_per_sample_results_of_one"],
    "eval.provenance": ["tests/eval/test_provenance.py", "tests/eval/test_provenance_description.py",
                        "tests/eval/test_run_attack.py"],
    "eval.trace": ["tests/eval/test_trace.py", "tests/cli/test_attack_cli.py"],
    "eval.report": ["tests/eval/test_report.py", "tests/eval/test_report_plots.py", "tests/cli/test_attack_cli.py"],
    "eval.baselines": ["tests/eval/test_baselines.py"],
    "eval.benchmark": ["tests/eval/test_benchmark.py"],
}
MODULES = tuple(TESTS)
KILLED = ("killed", "timeout", "segfault", "caught by type check")
NOT_CHECKED = "not checked"  # a run stopped before this mutant


def parse_results(text: str) -> dict[str, str]:
    """``mutmut results --all true`` lines ``    NAME: STATUS`` -> {NAME: STATUS}."""
    found = {}
    for line in text.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep and name.startswith("edgewise."):
            found[name] = status.strip()
    return found


def reviewed_mutants(path: Path, verdict: str) -> set[str]:
    """The mutant names on the lines of the survivors review that hold ``verdict`` ("equivalent", or "killed by
    hand": a mutant of code that runs at import time, which mutmut cannot switch on, applied to the source by
    hand and failed by the module's tests)."""
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        if verdict in line.lower():
            names.update(re.findall(r"`(edgewise\.[\w.ǁ]+__mutmut_\d+)`", line))
    return names


def mutant_diff(name: str, folder: Path) -> str:
    """The changed lines of one mutant: its function in mutmut's mutated copy against the original's."""
    module, _, function = name.removeprefix("edgewise.").rpartition(".")
    source = (folder / "mutants" / "src" / "edgewise" / (module.replace(".", "/") + ".py")).read_text()
    original = function.rpartition("__mutmut_")[0] + "__mutmut_orig"
    lines = source.splitlines()
    # methods are mutated inside their class (``xǁClassǁmethod__mutmut_N``): look at every function, nested too
    bodies = {node.name: lines[node.lineno:node.end_lineno] for node in ast.walk(ast.parse(source))
              if isinstance(node, ast.FunctionDef) and node.name in (original, function)}
    changed = difflib.unified_diff(bodies.get(original, []), bodies.get(function, []), lineterm="", n=0)
    return "\n".join(line for line in changed if line[:1] in "+-" and not line.startswith(("+++", "---")))


def summarize(statuses: dict[str, str], equivalent: set[str], by_hand: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Counts of one module's mutants (all, or the sample); survivors are those neither killed (by mutmut or, for
    ``by_hand``, by the tests run on the mutant applied by hand) nor marked equivalent (an equivalent mutant that
    timed out on the loaded machine is counted as equivalent, not as killed)."""
    hand = {name for name, status in statuses.items() if name in by_hand and status not in KILLED}
    killed = sum((status in KILLED or name in hand) and name not in equivalent for name, status in statuses.items())
    equal = len(equivalent & set(statuses))
    unchecked = sum(status == NOT_CHECKED and name not in hand for name, status in statuses.items())
    survivors = sorted(n for n, s in statuses.items()
                       if s not in (*KILLED, NOT_CHECKED) and n not in equivalent and n not in hand)
    scored = len(statuses) - equal - unchecked
    return {"mutants": len(statuses), "killed": killed, "killed_by_hand": len(hand - equivalent),
            "equivalent": equal, "survivors": survivors,
            "not_checked": unchecked, "statuses": dict(Counter(statuses.values())), "statuses_by_mutant": statuses,
            "score": killed / scored if scored else None,
            "interval": list(wilson(killed, scored)) if scored else None}


def wilson(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of the proportion successes / n (n may be an effective sample size)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def overall(entries: list[dict[str, Any]]) -> dict[str, float]:
    """Score over several modules, each run in full or as a uniform sample: the stratified estimate
    Σ N_h k_h / n_h / Σ N_h (n_h − e_h) / n_h (N_h mutants in module h, n_h sampled, k_h killed, e_h equivalent),
    with a Wilson interval on Kish's effective sample size (Σ w m)² / Σ w² m, w_h = N_h / n_h, m_h = n_h − e_h;
    a module run in full has weight 1 and no sampling error, so the interval is conservative."""
    weighted = [(e["total"] / e["mutants"], e["killed"], e["mutants"] - e["equivalent"]) for e in entries]
    killed = sum(w * k for w, k, _ in weighted)
    scored = sum(w * m for w, _, m in weighted)
    effective = scored ** 2 / sum(w * w * m for w, _, m in weighted)
    low, high = wilson(killed / scored * effective, effective)
    return {"score": killed / scored, "low": low, "high": high, "effective_n": effective,
            "mutants": sum(e["total"] for e in entries), "run": sum(e["mutants"] for e in entries)}


def read_report() -> dict[str, dict[str, Any]]:
    path = RESULTS / "mutation_report.json"
    return json.loads(path.read_text()) if path.exists() else {}


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def write_report(report: dict[str, dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mutation_report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    lines = ["# Mutation score of the core modules (mutmut 3.8.1)", "",
             "`make mutation` (= `python benchmarks/mutation.py`; shared settings in pyproject.toml `[tool.mutmut]`,",
             "the tests per module in benchmarks/mutation.py). Score = killed / (mutants − equivalent); timeouts",
             "count as killed. The review of every survivor and the equivalent mutants: `mutation_survivors.md`.",
             "Wall time on the shared 2-core machine (other work running), one worker.", "",
             "\"run\": **full** = every mutant of the module; **sample** = a seeded uniform random sample of the",
             "module's mutants (`--sample K --seed S`): its score is a *sample estimate* of the module's score, with",
             "a 95% Wilson interval. \"not run\": mutants (of the module or its sample) that a stopped run did not",
             "reach; the score is then over the mutants checked and the module is left out of the overall estimate.",
             "\"(N by hand)\": killed mutants applied to the source by hand that fail the module's tests (import-time",
             "code, which mutmut cannot switch on, or a new test not yet re-run through mutmut; see the review).",
             "",
             "| module | tests | mutants | run | checked | not run | killed | equivalent | not killed | score "
             "| 95% interval | wall time (s) | measured |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    complete = []
    for module in MODULES:
        entry = report.get(module)
        if entry is None:
            lines.append(f"| {module} | {', '.join(TESTS[module])} | | not run | | | | | | | | | |")
            continue
        total = entry.get("total", entry["mutants"])
        sample = entry.get("sample")
        how = "full" if sample is None else f"sample (seed {sample['seed']})"
        interval = entry.get("interval")
        shown = "" if sample is None or interval is None else f"{interval[0]:.1%} – {interval[1]:.1%}"
        by_hand = f" ({entry['killed_by_hand']} by hand)" if entry.get("killed_by_hand") else ""
        lines.append(f"| {module} | {', '.join(entry['tests'])} | {total} | {how} | "
                     f"{entry['mutants'] - entry['not_checked']} | {entry['not_checked']} | "
                     f"{entry['killed']}{by_hand} | "
                     f"{entry['equivalent']} | {len(entry['survivors'])} | {percent(entry['score'])} | {shown} | "
                     f"{entry['seconds']:.0f} | {entry['date']} |")
        if entry["not_checked"] == 0 and entry["score"] is not None:
            complete.append({**entry, "total": total})
    if complete:
        estimate = overall(complete)
        lines += ["", f"**Overall** (the {len(complete)} modules with every mutant of their run or sample checked, "
                  f"{estimate['run']} of their {estimate['mutants']} mutants run): score "
                  f"**{estimate['score']:.1%}**, 95% interval {estimate['low']:.1%} – {estimate['high']:.1%} "
                  f"(stratified sample estimate over the modules, weights N/n; Wilson interval on the effective "
                  f"sample size {estimate['effective_n']:.0f}, conservative since the full modules have no "
                  f"sampling error). Wall time of these runs: "
                  f"{sum(e['seconds'] for e in complete) / 60:.0f} min."]
    lines += ["", "## Mutants not killed and not marked equivalent", ""]
    for module in MODULES:
        entry = report.get(module, {})
        for name in entry.get("survivors", []):
            lines += [f"- `{name}` ({entry['statuses_by_mutant'][name]})", "", "```diff",
                      entry["diffs"].get(name, ""), "```", ""]
    (RESULTS / "mutation_report.md").write_text("\n".join(lines) + "\n")


def prepare(module: str) -> Path:
    """build/mutation/MODULE: src/ and tests/ linked, pyproject.toml with the module's mutmut selection."""
    folder = WORK / module
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("src", "tests"):
        link = folder / name
        if not link.exists():
            link.symlink_to(ROOT / name, target_is_directory=True)
    text = (ROOT / "pyproject.toml").read_text()
    header = "[tool.mutmut]\n"
    if header not in text:
        raise SystemExit("pyproject.toml has no [tool.mutmut] section")
    selection = f"only_mutate = {json.dumps([source_of(module)])}\n" \
                f"pytest_add_cli_args_test_selection = {json.dumps(TESTS[module])}\n"
    (folder / "pyproject.toml").write_text(text.replace(header, header + selection, 1))
    return folder


def source_of(module: str) -> str:
    return "src/edgewise/" + module.replace(".", "/") + ".py"


def mutant_names(module: str, folder: Path) -> list[str]:
    """The names of all the module's mutants, as mutmut generates them (under the module's settings)."""
    generate = ("import sys; from mutmut.mutation.file_mutation import mutate_file_contents as m; "
                "print(*m(sys.argv[1], open(sys.argv[1]).read()).mutant_names, sep='\\n')")
    shown = subprocess.run([sys.executable, "-c", generate, source_of(module)], cwd=folder, capture_output=True,
                           text=True, check=True).stdout
    return sorted(f"edgewise.{module}.{name}" for name in shown.split())


def statuses_of(module: str, folder: Path) -> dict[str, str]:
    """mutmut's recorded status of each of the module's mutants in ``folder`` (none before a first run)."""
    if not (folder / "mutants").is_dir():
        return {}
    shown = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=folder, capture_output=True, text=True,
                           check=True).stdout
    return {n: s for n, s in parse_results(shown).items() if n.startswith(f"edgewise.{module}.")}


def module_results(module: str, folder: Path, sample: list[str] | None) -> dict[str, Any]:
    """The module's counts (over ``sample`` if given) from mutmut's results in ``folder`` and the survivors review,
    with the diffs of the survivors."""
    statuses = statuses_of(module, folder)
    if sample is not None:
        statuses = {name: statuses.get(name, NOT_CHECKED) for name in sample}
    entry = summarize(statuses, reviewed_mutants(REVIEW, "equivalent"),
                      frozenset(reviewed_mutants(REVIEW, "killed by hand")))
    entry["diffs"] = {name: mutant_diff(name, folder) for name in entry["survivors"]}
    return entry


def rescored(entry: dict[str, Any]) -> dict[str, Any]:
    """A module's counts from the statuses its report recorded, under the survivors review as it is now (for a
    module whose mutmut folder is not in this checkout); the diffs of its remaining survivors kept."""
    found = summarize(entry["statuses_by_mutant"], reviewed_mutants(REVIEW, "equivalent"),
                      frozenset(reviewed_mutants(REVIEW, "killed by hand")))
    found["diffs"] = {name: entry["diffs"].get(name, "") for name in found["survivors"]}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(MODULES),
                        help=f"comma-separated, from {', '.join(MODULES)} (default: all)")
    parser.add_argument("--sample", type=int, default=None,
                        help="run a uniform random sample of this many mutants of each module that has more "
                             "(default: every mutant)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="run again only the modules' survivors of the last run, and the mutants killed only "
                             "by hand (after new tests were added)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant workers (default 1)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite the report from the modules' mutmut results (after mutants were "
                             "re-run by hand with `mutmut run NAME` in build/mutation/MODULE, or equivalents added)")
    args = parser.parse_args()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"--modules: unknown {unknown}, expected some of {list(MODULES)}")
    if args.sample is not None and args.sample < 1:
        parser.error(f"--sample: expected a positive number of mutants, got {args.sample}")
    if args.report_only:
        report = read_report()
        for module in MODULES:
            folder = WORK / module
            if not (folder / "mutants").is_dir():
                if module in report:  # measured elsewhere (another checkout): its recorded statuses, re-reviewed
                    report[module].update(rescored(report[module]))
                continue
            if module not in report:  # a run that was stopped: its time from its folder's files
                metas = list((folder / "mutants").rglob("*.meta")) or [folder / "pyproject.toml"]
                report[module] = {"tests": TESTS[module], "seconds": max(p.stat().st_mtime for p in metas)
                                  - (folder / "pyproject.toml").stat().st_mtime, "date": datetime.fromtimestamp(
                                      (folder / "pyproject.toml").stat().st_mtime, timezone.utc).strftime(
                                      "%Y-%m-%d %H:%M") + " (stopped)"}
            sample = report[module].get("sample")
            report[module].update(module_results(module, folder, sample and sample["names"]))
        write_report(report)
        return
    for module in modules:
        folder = prepare(module)
        names = mutant_names(module, folder)
        earlier = read_report().get(module, {})
        sample = None
        todo: list[str] = []
        fresh = False  # the module's tests changed since its last run: every mutant of the sample runs again
        if args.rerun_survivors:
            # the survivors, and the mutants killed only by hand so far (a new test not yet run through mutmut)
            statuses = earlier.get("statuses_by_mutant", {})
            survivors = sorted(name for name, status in statuses.items()
                               if status not in KILLED and name not in reviewed_mutants(REVIEW, "equivalent"))
            if not survivors:
                continue
            if not (folder / "mutants").is_dir():
                # mutmut would check only the survivors here, and the module's other mutants would count as not run
                print(f"{module}: no earlier mutmut results in {folder}: run its sample again (--sample K --seed S)",
                      file=sys.stderr)
                continue
            sample, todo = (earlier["sample"] or {}).get("names"), survivors
        elif args.sample is not None and args.sample < len(names):
            sample = sorted(random.Random(args.seed).sample(names, args.sample))
            done = statuses_of(module, folder)
            # other tests than the last run's: mutmut resets all the module's results
            fresh = earlier.get("tests", TESTS[module]) != TESTS[module]
            todo = [name for name in sample if fresh or done.get(name, NOT_CHECKED) == NOT_CHECKED]
        start = time.monotonic()
        if (sample is None or todo) and subprocess.run(
                [*MUTMUT, "run", "--max-children", str(args.max_children), *todo], cwd=folder).returncode:
            print(f"{module}: mutmut failed (see its output above); going on with the next module", file=sys.stderr)
            continue
        seconds = time.monotonic() - start
        report = read_report()  # re-read: another run may have measured other modules meanwhile
        spec = earlier.get("sample") if args.rerun_survivors else (
            None if sample is None else {"seed": args.seed, "size": args.sample, "names": sample})
        if args.rerun_survivors or (spec is not None and earlier.get("sample") == spec and not fresh):
            seconds += earlier["seconds"]  # the same mutants resumed: their time in all
        report[module] = {**module_results(module, folder, sample), "seconds": seconds,
                          "tests": TESTS[module], "total": len(names), "sample": spec,
                          "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")}
        write_report(report)


if __name__ == "__main__":
    main()
