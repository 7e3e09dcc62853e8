import json
from pathlib import Path

import pytest

from edgewise.cli import main

ARGUMENTS = ["attack", "--attack", "ddn", "--steps", "3", "--n", "8", "--no-progress"]


def test_report_has_sanity_checks_and_failure_indicators(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGUMENTS, "--out", str(tmp_path / "checked")]) == 0
    printed = capsys.readouterr().out
    assert "sanity checks" in printed and "passed" in printed and "margin never decreased" in printed
    summary = json.loads((tmp_path / "checked" / "results.json").read_text())["summary"]
    assert summary["sanity"] == [] and summary["processes"] == 1
    assert {"failed_verification", "no_adversarial", "non_finite", "stalled"} <= set(summary)
    row = json.loads((tmp_path / "checked" / "samples.jsonl").read_text().splitlines()[0])
    assert isinstance(row["non_finite"], bool) and isinstance(row["stalled"], bool)

    assert main([*ARGUMENTS, "--no-checks", "--out", str(tmp_path / "unchecked")]) == 0
    assert "skipped (--no-checks)" in capsys.readouterr().out
    assert json.loads((tmp_path / "unchecked" / "results.json").read_text())["summary"]["sanity"] is None
