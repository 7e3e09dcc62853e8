"""``edgewise minmax``: a small run writes its files and table; bad arguments exit 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgewise.cli import main


def test_small_ensemble_run_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    status = main(["minmax", "--kind", "ensemble", "--model", "A,C", "--distance", "l2", "--eps", "1", "--steps", "2",
                   "--n", "8", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "| average |" in printed and "| minmax |" in printed and "ASR_all" in printed
    results = json.loads((out / "results.json").read_text())
    row = results["results"]["A,C"]["1"]
    assert row["domains"] == ["A", "C"] and set(row["minmax"]["accuracy"]) == {"A", "C"}
    assert results["models"] == {"A": "mlp-fmnist", "C": "lenet-fmnist"}
    assert len((out / "samples.jsonl").read_text().splitlines()) == 16
    assert (out / "weights.png").read_bytes()[:4] == b"\x89PNG"


def test_universal_and_transform_runs(tmp_path: Path) -> None:
    assert main(["minmax", "--kind", "universal", "--model", "A", "--group-size", "2", "--steps", "2", "--n", "6",
                 "--out", str(tmp_path / "u")]) == 0
    # every one of the --n samples is attacked: 3 groups of 2 per strategy, each image with its fooled flag
    groups = [json.loads(line) for line in (tmp_path / "u" / "samples.jsonl").read_text().splitlines()]
    for strategy in ("average", "minmax"):
        assert [len(row["fooled"]) for row in groups if row["strategy"] == strategy] == [2, 2, 2]
    assert json.loads((tmp_path / "u" / "results.json").read_text())["provenance"]["data"]["n"] == 6
    assert main(["minmax", "--kind", "transform", "--model", "A", "--transforms", "identity,hflip", "--steps",
                 "2", "--n", "4", "--out", str(tmp_path / "t")]) == 0
    row = json.loads((tmp_path / "t" / "results.json").read_text())["results"]["A"]["0.2"]
    assert row["domains"] == ["identity", "hflip"]


@pytest.mark.parametrize("argv,match", [
    (["minmax", "--kind", "pairs"], "invalid choice"),
    (["minmax", "--model", "Z"], "--model 'Z' is neither a zoo model"),
    (["minmax", "--distance", "l2", "--eps", "-1", "--n", "2", "--steps", "1"],
     "--eps must be a comma list of numbers > 0"),
    # Before: the attack's keyword names (step_size must be > 0), not the options given.
    (["minmax", "--step-size", "0", "--n", "2"], "--step-size must be > 0, got 0.0"),
    (["minmax", "--weight-step", "nan", "--n", "2"], "--weight-step must be a finite number, got nan"),
    (["minmax", "--gamma", "-1", "--n", "2"], "--gamma must be >= 0, got -1.0"),
    (["minmax", "--distance", "l0", "--eps", "0.5", "--n", "2"], "--eps must be a whole number with norm 'l0'"),
])
def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                              match: str) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert match in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(("kind", "size"), [("ensemble", 1), ("universal", 2), ("transform", 1)])
def test_samples_name_the_dataset_indices_of_each_group(tmp_path: Path, kind: str, size: int) -> None:
    # Before: each line had only its position "group" (0, 1, ...), which with --indices or --offset is not the
    # dataset index of the sample it is about.
    indices = [7, 3, 9, 1]
    options = {"ensemble": ["--model", "A,C"], "universal": ["--model", "A", "--group-size", "2"],
               "transform": ["--model", "A", "--transforms", "identity,hflip"]}[kind]
    out = tmp_path / "o"
    assert main(["minmax", "--kind", kind, *options, "--indices", ",".join(map(str, indices)), "--steps", "1",
                 "--no-progress", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for strategy in ("average", "minmax"):
        found = [row["indices"] for row in rows if row["strategy"] == strategy]
        assert found == [indices[i : i + size] for i in range(0, len(indices), size)]
