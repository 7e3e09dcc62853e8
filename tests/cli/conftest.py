"""Helpers of the CLI tests: a run's per-sample rows and the one-line error of a refused command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def rows() -> Callable[[Path], list[dict[str, Any]]]:
    """The rows of ``OUT/samples.jsonl``."""

    def read(out: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]

    return read


@pytest.fixture
def one_error_line(capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """The command's standard error, checked to be one line without a traceback."""

    def read() -> str:
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    return read
