"""Mutation score of the core modules: mutmut runs each module's mutants against that module's fast tests.

    python benchmarks/mutation.py [--modules penalties,losses,...] [--max-children 1] [--report-only]

Runs from the repository root (``make mutation``). Each module gets its own work folder build/mutation/MODULE
(links to src/ and tests/, and pyproject.toml with ``[tool.mutmut]`` extended by the file to mutate and the
module's tests, ``TESTS`` below); mutmut copies src/ and tests/ to its mutants/ folder, records which of those
tests call each function and runs every mutant only against them, stopping at the first failure. A module whose
run was interrupted resumes where it stopped; functions changed since are tested again. Each module's wall time
is recorded.

Writes benchmarks/results/mutation_report.{md,json}. A module measured before and not in ``--modules`` keeps its
earlier entry. The score is killed / (mutants − equivalent), where the equivalent mutants are those listed, with
the reason, in benchmarks/results/mutation_survivors.md (a line holding the mutant's name in backticks and the
word "equivalent").
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
MUTMUT = (sys.executable, "-m", "mutmut")

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
# Per module (dotted, under edgewise), smallest and most used first: the fast tests that check it.
TESTS = {
    "penalties": ["tests/test_penalties.py", "tests/test_penalties_values.py"],
    "losses": ["tests/test_losses.py"],
    "attacks.ddn": ["tests/attacks/test_ddn.py", "tests/attacks/test_quality_vs_adv_lib.py"],
    "attacks.fmn": ["tests/attacks/test_fmn.py"],
    "projections": ["tests/test_projections.py"],
    "attacks.alma": ["tests/attacks/test_alma.py", "tests/attacks/test_alma_schedule.py"],
    "training.recipes": ["tests/training/test_recipes.py"],
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


def equivalent_mutants(path: Path) -> set[str]:
    """The mutant names that the survivors review marks as equivalent."""
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        if "equivalent" in line.lower():
            names.update(re.findall(r"`(edgewise\.[\w.ǁ]+__mutmut_\d+)`", line))
    return names


def mutant_diff(name: str, folder: Path) -> str:
    """The changed lines of one mutant: its function in mutmut's mutated copy against the original's."""
    module, _, function = name.removeprefix("edgewise.").rpartition(".")
    source = (folder / "mutants" / "src" / "edgewise" / (module.replace(".", "/") + ".py")).read_text()
    original = function.rpartition("__mutmut_")[0] + "__mutmut_orig"
    lines = source.splitlines()
    bodies = {node.name: lines[node.lineno:node.end_lineno] for node in ast.parse(source).body
              if isinstance(node, ast.FunctionDef) and node.name in (original, function)}
    changed = difflib.unified_diff(bodies.get(original, []), bodies.get(function, []), lineterm="", n=0)
    return "\n".join(line for line in changed if line[:1] in "+-" and not line.startswith(("+++", "---")))


def summarize(statuses: dict[str, str], equivalent: set[str]) -> dict[str, Any]:
    """Counts of one module's mutants; survivors are those neither killed nor marked equivalent (an equivalent
    mutant that timed out on the loaded machine is counted as equivalent, not as killed)."""
    killed = sum(status in KILLED and name not in equivalent for name, status in statuses.items())
    equal = len(equivalent & set(statuses))
    unchecked = sum(status == NOT_CHECKED for status in statuses.values())
    survivors = sorted(n for n, s in statuses.items() if s not in (*KILLED, NOT_CHECKED) and n not in equivalent)
    scored = len(statuses) - equal - unchecked
    return {"mutants": len(statuses), "killed": killed, "equivalent": equal, "survivors": survivors,
            "not_checked": unchecked, "statuses": dict(Counter(statuses.values())), "statuses_by_mutant": statuses,
            "score": killed / scored if scored else None}


def read_report() -> dict[str, dict[str, Any]]:
    path = RESULTS / "mutation_report.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_report(report: dict[str, dict[str, Any]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mutation_report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    lines = ["# Mutation score of the core modules (mutmut 3.8.1)", "",
             "`make mutation` (= `python benchmarks/mutation.py`; shared settings in pyproject.toml `[tool.mutmut]`,",
             "the tests per module in benchmarks/mutation.py). Score = killed / (mutants − equivalent); timeouts",
             "count as killed. The review of every survivor and the equivalent mutants: `mutation_survivors.md`.",
             "Wall time on the shared 2-core machine (load average 10-15 from other work), one worker.", "",
             "Score over the mutants checked; \"not run\": mutants of a module whose run was stopped before them.", "",
             "| module | tests | mutants | not run | killed | equivalent | not killed | score | wall time (s) "
             "| measured |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    total: Counter[str] = Counter()
    for module in MODULES:
        entry = report.get(module)
        if entry is None:
            lines.append(f"| {module} | {', '.join(TESTS[module])} | not run | | | | | | | |")
            continue
        score = entry["score"]
        lines.append(f"| {module} | {', '.join(entry['tests'])} | {entry['mutants']} | {entry['not_checked']} | "
                     f"{entry['killed']} | "
                     f"{entry['equivalent']} | {len(entry['survivors'])} | "
                     f"{'' if score is None else f'{score:.1%}'} | {entry['seconds']:.0f} | {entry['date']} |")
        for key in ("mutants", "not_checked", "killed", "equivalent", "seconds"):
            total[key] += entry[key]
        total["survivors"] += len(entry["survivors"])
    scored = total["mutants"] - total["equivalent"] - total["not_checked"]
    if scored:
        lines.append(f"| **all run** | | {total['mutants']} | {total['not_checked']} | {total['killed']} | "
                     f"{total['equivalent']} | "
                     f"{total['survivors']} | {total['killed'] / scored:.1%} | {total['seconds']:.0f} | |")
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
    source = "src/edgewise/" + module.replace(".", "/") + ".py"
    text = (ROOT / "pyproject.toml").read_text()
    header = "[tool.mutmut]\n"
    if header not in text:
        raise SystemExit("pyproject.toml has no [tool.mutmut] section")
    selection = f"only_mutate = {json.dumps([source])}\n" \
                f"pytest_add_cli_args_test_selection = {json.dumps(TESTS[module])}\n"
    (folder / "pyproject.toml").write_text(text.replace(header, header + selection, 1))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(MODULES),
                        help=f"comma-separated, from {', '.join(MODULES)} (default: all)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant workers (default 1)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rewrite the report from the modules' mutmut results (after mutants were "
                             "re-run by hand with `mutmut run NAME` in build/mutation/MODULE, or equivalents added)")
    args = parser.parse_args()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"--modules: unknown {unknown}, expected some of {list(MODULES)}")
    equivalent = equivalent_mutants(RESULTS / "mutation_survivors.md")
    if args.report_only:
        report = read_report()
        for module in MODULES:
            folder = WORK / module
            if not (folder / "mutants").is_dir():
                continue
            if module not in report:  # a run that was stopped: its time from its folder's files
                metas = list((folder / "mutants").rglob("*.meta")) or [folder / "pyproject.toml"]
                report[module] = {"tests": TESTS[module], "seconds": max(p.stat().st_mtime for p in metas)
                                  - (folder / "pyproject.toml").stat().st_mtime, "date": datetime.fromtimestamp(
                                      (folder / "pyproject.toml").stat().st_mtime, timezone.utc).strftime(
                                      "%Y-%m-%d %H:%M") + " (stopped)"}
            report[module].update(module_results(module, folder, equivalent))
        write_report(report)
        return
    for module in modules:
        folder = prepare(module)
        start = time.monotonic()
        subprocess.run([*MUTMUT, "run", "--max-children", str(args.max_children)], cwd=folder, check=True)
        seconds = time.monotonic() - start
        report = read_report()  # re-read: another run may have measured other modules meanwhile
        report[module] = {**module_results(module, folder, equivalent), "seconds": seconds, "tests": TESTS[module],
                          "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")}
        write_report(report)


def module_results(module: str, folder: Path, equivalent: set[str]) -> dict[str, Any]:
    """The module's counts from mutmut's results in ``folder``, with the diffs of the survivors."""
    shown = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=folder, capture_output=True, text=True,
                           check=True).stdout
    statuses = {n: s for n, s in parse_results(shown).items() if n.startswith(f"edgewise.{module}.")}
    entry = summarize(statuses, equivalent)
    entry["diffs"] = {name: mutant_diff(name, folder) for name in entry["survivors"]}
    return entry


if __name__ == "__main__":
    main()
