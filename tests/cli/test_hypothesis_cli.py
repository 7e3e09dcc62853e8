"""Property-based tests over the CLI's options and the library's entry points (bind_attack, run_attack): random
combinations of valid and invalid arguments give a result or a documented error (exit 2 and one line; a
ValueError/TypeError in the library), never a traceback; a re-run command equals a fresh run.

With EDGEWISE_HYPOTHESIS_REPORT=path the examples' outcomes are tallied into that markdown file
(benchmarks/results/cli_hypothesis.md was written so)."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from edgewise.cli import main
from edgewise.cli.attack import bind_attack
from edgewise.eval import run_attack

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    database=None)
OUTCOMES: collections.Counter[str] = collections.Counter()

VALUES: dict[str, list[Any]] = {
    "--model": ["smallcnn-fmnist", "mlp-fmnist", "nope", "torchvision:nope", "x.py:build"],
    "--attack": ["ddn", "fmn", "alma", "pgd", "cw", "bogus"],
    "--distance": ["l1", "l2", "linf", "ciede2000", "lp3"],
    "--steps": ["1", "2", "0", "-3", "x"],
    "--n": ["1", "3", "0", "5000", "two"],
    "--offset": ["0", "2", "-1", "999", "1000"],
    "--indices": ["4,1", "3,3", "-1", "1000", "a"],
    "--batch-size": ["1", "2", "0", "-2"],
    "--levels": ["256", "2", "1", "0", "x"],
    "--eps": ["0.5", "0.1,1", "-1", "nan", "a,b"],
    "--attack-options": ["{}", '{"bogus": 1}', "[1]", "{", '{"targeted": true}'],
    "--data": ["sample", "nope", "/nonexistent.npz"],
    "--split": ["train", "test", "val"],
    "--weights": ["w.pt"],
    "--mean": ["0.5", "0.5,0.5", "x"],
    "--std": ["0.5", "0", "-1"],
    "--seed": ["0", "7", "-1", "x"],
    "--device": ["cpu", "cuda:7", "gpu"],
}
FLAGS = ["--targeted", "--no-checks", "--trace"]


@st.composite
def attack_argv(draw: st.DrawFn) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(sorted(VALUES)), max_size=4, unique=True))
    argv = ["attack", "--steps", "1", "--n", "2"]
    for option in chosen:
        argv += [option, draw(st.sampled_from(VALUES[option]))]
    argv += draw(st.lists(st.sampled_from(FLAGS), max_size=2, unique=True))
    return argv


def category(line: str) -> str:
    """The error's kind: its first option-like word and the start of the message, without values."""
    text = line.removeprefix("edgewise: error: ").removeprefix("edgewise attack: error: ")
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d[\d.,e-]*|\[[^\]]*\]|/\S+", "…", text)[:70]


def run_cli(argv: list[str], out: Path) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main([*argv, "--out", str(out), "--no-progress"])
    return status, err.getvalue().strip().splitlines()


@SETTINGS
@given(argv=attack_argv())
def test_attack_gives_a_result_or_one_error_line(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        status, lines = run_cli(argv, Path(folder) / "out")
        assert status in (0, 2), (argv, lines)
        if status == 2:
            assert len(lines) == 1 and lines[0].startswith("edgewise") and "Traceback" not in lines[0], (argv, lines)
            OUTCOMES["cli error: " + category(lines[0])] += 1
        else:
            results = json.loads((Path(folder) / "out" / "results.json").read_text())
            assert results["summary"]["n"] == results["provenance"]["data"]["n"]
            OUTCOMES["cli result"] += 1


def rows(folder: Path) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    for row in found:
        del row["seconds"]
    return found


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(attack=st.sampled_from(["ddn", "fmn", "pgd"]), n=st.integers(1, 4), batch=st.integers(1, 3),
       seed=st.integers(0, 3), targeted=st.booleans())
def test_a_rerun_equals_a_fresh_run(attack: str, n: int, batch: int, seed: int, targeted: bool) -> None:
    argv = ["attack", "--attack", attack, "--steps", "2", "--n", str(n), "--batch-size", str(batch), "--seed",
            str(seed), *(["--targeted"] if targeted else [])]
    with tempfile.TemporaryDirectory() as folder:
        reused, fresh = Path(folder) / "reused", Path(folder) / "fresh"
        assert run_cli(argv, reused)[0] == 0
        assert run_cli([*argv, "--eps", "0.3"], reused)[0] == 0  # a summary-only change: batches reused
        assert run_cli(argv, fresh)[0] == 0
        assert rows(reused) == rows(fresh)
        OUTCOMES["re-run equal to fresh run"] += 1


MODEL = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
INPUTS = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
LABELS = torch.tensor([0, 1, 2, 0])


@settings(max_examples=40, deadline=None, database=None)
@given(name=st.sampled_from(["ddn", "fmn", "alma", "pgd", "cw", "nope"]),
       steps=st.sampled_from([None, 1, 2]),
       distance=st.sampled_from([None, "l1", "l2", "linf", "ssim", "x"]),
       options=st.sampled_from([{}, {"bogus": 1}, {"targeted": True}, {"step_size": 0.1}]),
       targeted=st.booleans(),
       batch_size=st.sampled_from([1, 3, 0, "2"]), levels=st.sampled_from([None, 256, 1]),
       seed=st.sampled_from([0, 5, -1, 1.5, True]))
def test_library_entry_points_give_a_result_or_a_clear_error(name: str, steps: int | None, distance: str | None,
                                                             options: dict[str, Any], targeted: bool,
                                                             batch_size: Any, levels: int | None, seed: Any) -> None:
    try:
        attack = bind_attack(name, steps=steps, distance=distance, options=options, targeted=targeted)
        targets = (LABELS + 1) % 3 if targeted else None
        result = run_attack(MODEL, INPUTS, LABELS, attack, batch_size=batch_size, targeted=targeted, targets=targets,
                            levels=levels, seed=seed, progress=False, checks=False)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert message and "\n" not in message.strip(), message
        OUTCOMES[f"library {type(error).__name__}: " + category(message)] += 1
        return
    assert len(result) == 4 and bool(result.success.any()) in (True, False)
    OUTCOMES["library result"] += 1


@pytest.fixture(scope="module", autouse=True)
def tally() -> Iterator[None]:
    yield
    path = os.environ.get("EDGEWISE_HYPOTHESIS_REPORT")
    if path:
        lines = ["# Hypothesis over the CLI and the library entry points", "",
                 "`EDGEWISE_HYPOTHESIS_REPORT=benchmarks/results/cli_hypothesis.md pytest "
                 "tests/cli/test_hypothesis_cli.py`: each example's outcome. Every error was one line (exit 2 "
                 "in the CLI; a ValueError/TypeError in the library); none was a traceback (the tests assert it).",
                 "", f"examples: {sum(OUTCOMES.values())}", "", "| outcome | examples |", "|---|---|"]
        lines += [f"| {key.replace('|', '/')} | {count} |" for key, count in sorted(OUTCOMES.items())]
        Path(path).write_text("\n".join(lines) + "\n")
