"""An `edgewise attack` killed mid-way (SIGTERM) and started again equals an uninterrupted run.

pgd draws a random start per batch: a generator carried from batch to batch instead of seeded per batch would
make the resumed run differ."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgewise.cli import main

ARGUMENTS = ["attack", "--attack", "pgd", "--steps", "60", "--n", "48", "--batch-size", "4", "--no-progress"]


def _samples(folder: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    for row in rows:
        del row["seconds"]
    return rows


def _command(out: Path) -> list[str]:
    return [sys.executable, "-m", "edgewise", *ARGUMENTS, "--out", str(out)]


@pytest.mark.usefixtures("single_thread")
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_command(out), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list((out / "batches").glob("batch-*.pt")) and process.poll() is None:
        assert time.monotonic() < deadline, "no batch was written in time"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, "the run finished before it could be interrupted"
    finished = {path: path.stat().st_mtime_ns for path in (out / "batches").glob("batch-*.pt")}
    assert 1 <= len(finished) < 12 and not (out / "results.json").exists()

    done = subprocess.run(_command(out), env=environment, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in finished.items()), "a finished batch was redone"
    assert len(list((out / "batches").glob("batch-*.pt"))) == 12
    assert not list((out / "batches").glob("*.tmp"))

    assert main([*ARGUMENTS, "--out", str(tmp_path / "whole")]) == 0
    assert _samples(out) == _samples(tmp_path / "whole")


def test_a_resumed_folder_refuses_other_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = ["attack", "--attack", "ddn", "--steps", "2", "--n", "4", "--no-progress", "--out", str(tmp_path)]
    assert main(short) == 0
    assert main([*short[:-2], "--steps", "3", "--out", str(tmp_path)]) == 2
    assert "run with attack.keywords.steps=2, this run has attack.keywords.steps=3" in capsys.readouterr().err
