"""Mutation score of the core modules: mutmut runs each module's mutants against that module's fast tests.

    python benchmarks/mutation.py [--modules penalties,losses,...] [--max-children 1]

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
    """The changed lines of one mutant (``mutmut show``)."""
    shown = subprocess.run([*MUTMUT, "show", name], cwd=folder, capture_output=True, text=True, check=False).stdout
    return "\n".join(line for line in shown.splitlines()
                     if line[:1] in "+-" and not line.startswith(("+++", "---")))


def summarize(statuses: dict[str, str], equivalent: set[str]) -> dict[str, Any]:
    """Counts of one module's mutants; survivors are those neither killed nor marked equivalent."""
    killed = sum(status in KILLED for status in statuses.values())
    equal = len(equivalent & set(statuses))
    survivors = sorted(n for n, s in statuses.items() if s not in KILLED and n not in equivalent)
    scored = len(statuses) - equal
    return {"mutants": len(statuses), "killed": killed, "equivalent": equal, "survivors": survivors,
            "statuses": dict(Counter(statuses.values())), "statuses_by_mutant": statuses,
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
             "| module | tests | mutants | killed | equivalent | not killed | score | wall time (s) | measured |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    total: Counter[str] = Counter()
    for module in MODULES:
        entry = report.get(module)
        if entry is None:
            lines.append(f"| {module} | {', '.join(TESTS[module])} | not run | | | | | | |")
            continue
        score = entry["score"]
        lines.append(f"| {module} | {', '.join(entry['tests'])} | {entry['mutants']} | {entry['killed']} | "
                     f"{entry['equivalent']} | {len(entry['survivors'])} | "
                     f"{'' if score is None else f'{score:.1%}'} | {entry['seconds']:.0f} | {entry['date']} |")
        for key in ("mutants", "killed", "equivalent", "seconds"):
            total[key] += entry[key]
        total["survivors"] += len(entry["survivors"])
    scored = total["mutants"] - total["equivalent"]
    if scored:
        lines.append(f"| **all run** | | {total['mutants']} | {total['killed']} | {total['equivalent']} | "
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
    args = parser.parse_args()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"--modules: unknown {unknown}, expected some of {list(MODULES)}")
    equivalent = equivalent_mutants(RESULTS / "mutation_survivors.md")
    for module in modules:
        folder = prepare(module)
        start = time.monotonic()
        subprocess.run([*MUTMUT, "run", "--max-children", str(args.max_children)], cwd=folder, check=True)
        seconds = time.monotonic() - start
        shown = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=folder, capture_output=True, text=True,
                               check=True).stdout
        statuses = {n: s for n, s in parse_results(shown).items() if n.startswith(f"edgewise.{module}.")}
        entry = summarize(statuses, equivalent)
        entry["diffs"] = {name: mutant_diff(name, folder) for name in entry["survivors"]}
        report = read_report()  # re-read: another run may have measured other modules meanwhile
        report[module] = {**entry, "seconds": seconds, "tests": TESTS[module],
                          "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")}
        write_report(report)
    report = read_report()
    for entry in report.values():  # equivalents added to the review since a module's run
        entry.update(summarize(entry["statuses_by_mutant"], equivalent))
    write_report(report)


if __name__ == "__main__":
    main()
