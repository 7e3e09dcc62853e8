import json
import re
from pathlib import Path

import pytest

from edgewise.cli import main

pytest.importorskip("pyscipopt")


def test_exact_writes_the_comparison_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exact"
    argv = ["exact", "--model", "tinymlp-pgd-fmnist", "--distance", "linf", "--n", "2", "--steps", "10",
            "--attack", "fmn-linf", "--time-limit", "4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "certified optimal:" in printed and "fmn-linf: median ratio" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["summary"]["n"] == 2 and set(results["summary"]["attacks"]) == {"fmn-linf"}
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for line in lines:
        # The attack's verified distance can never be below the certified lower bound.
        assert line["attacks"]["fmn-linf"] >= line["lower_bound"] * (1 - 1e-6)
    assert (out / "attack_vs_exact.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    solved = sorted((out / "exact" / "samples").iterdir())
    stamps = [p.stat().st_mtime_ns for p in solved]
    assert main(argv) == 0  # everything is loaded, nothing solved again
    assert [p.stat().st_mtime_ns for p in solved] == stamps
    assert [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()] == lines
    # Another model's solved samples are never handed back: the folder is refused in one line naming the key.
    other = [*argv[:2], "tinymlp-fmnist", *argv[3:]]
    assert main(other) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "model.spec='tinymlp-pgd-fmnist'" in error
    assert main([*argv, "--gap", "0.01"]) == 2 and "gap=0.0001" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["exact", "--distance", "l0"], "--distance: invalid choice"),
        (["exact", "--time-limit", "0"], "--time-limit must be > 0"),
        (["exact", "--attack", "nope"], "is not in the registry"),
        (["exact", "--distance", "l1", "--attack", "fmn-linf"], "minimizes 'linf'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(match, err), err


def test_benchmark_exact_writes_the_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["benchmark", "--model", "tinymlp-pgd-fmnist", "--attack", "fmn-linf", "--distance", "linf",
            "--steps", "10", "--n", "1", "--exact", "--exact-time-limit", "3", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((out / "exact-tinymlp-pgd-fmnist.json").read_text())
    assert summary["n"] == 1 and summary["norm"] == "linf" and set(summary["attacks"]) == {"fmn-linf 10"}
    assert (out / "exact" / "tinymlp-pgd-fmnist" / "attack_vs_exact.png").is_file()
