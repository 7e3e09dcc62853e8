"""``edgewise minmax`` keys batches and results by the exact ε: budgets that ``:g`` prints alike do not share
batches or a results key, a stored batch of another ε is recomputed, and a repeated ε is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgewise.attacks.minmax import MinMaxResult
from edgewise.cli import main
from edgewise.cli.minmax import eps_key, run_batched

CLOSE = ("0.05", "0.05000004")  # distinct floats, both "0.05" with :g
SMALL = ["minmax", "--kind", "ensemble", "--model", "A,C", "--distance", "linf", "--steps", "2", "--n", "4",
         "--no-progress"]


@pytest.mark.parametrize("text", ["0.05", "0.05000004", "1", "0.2", "1e-05", "12345678.9"])
def test_eps_key_reads_back_as_the_same_float(text: str) -> None:
    assert float(eps_key(float(text))) == float(text)
    assert eps_key(float(text)) == text


def test_close_budgets_get_distinct_keys() -> None:
    assert eps_key(float(CLOSE[0])) != eps_key(float(CLOSE[1]))


def fake_attack(calls: list[float], eps: float):
    """A stand-in attack (one domain) returning ``eps`` as its adversarial input, counting its calls."""
    def attack(target, x: torch.Tensor, y: torch.Tensor) -> MinMaxResult:
        calls.append(eps)
        return MinMaxResult(adv=torch.full_like(x, eps), weights=torch.ones(len(x), 1),
                            history=torch.ones(2, len(x), 1), fooled=torch.zeros(len(x), 1, dtype=torch.bool),
                            clean_fooled=torch.zeros(len(x), 1, dtype=torch.bool))
    return attack


def test_stored_batch_of_another_eps_is_recomputed(tmp_path: Path) -> None:
    inputs, labels = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    calls: list[float] = []
    for eps in (0.05, 0.05, 0.05000004):  # the second reuses the first; the third must not
        result = run_batched(fake_attack(calls, eps), None, inputs, labels, batch_size=4, resume_dir=tmp_path,
                             record={"eps": eps})
        assert torch.equal(result.adv, torch.full_like(inputs, eps))
    assert calls == [0.05, 0.05000004]
    (path,) = tmp_path.iterdir()
    assert torch.load(path, weights_only=True)["record"] == {"eps": 0.05000004}


def test_close_budgets_in_two_runs_do_not_share_batches(tmp_path: Path) -> None:
    """The audit's repro: the second run reused the first's batches (both under eps-0.05)."""
    out = tmp_path / "run"
    for eps in CLOSE:
        assert main([*SMALL, "--eps", eps, "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "batches" / "A,C").iterdir()) == [f"eps-{e}" for e in CLOSE]
    for strategy in ("average", "minmax"):
        (batch,) = (out / "batches" / "A,C" / f"eps-{CLOSE[1]}" / strategy).iterdir()
        assert torch.load(batch, weights_only=True)["record"] == {"eps": float(CLOSE[1]), "strategy": strategy}
    assert list(json.loads((out / "results.json").read_text())["results"]["A,C"]) == [CLOSE[1]]


def test_close_budgets_in_one_run_keep_both_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*SMALL, "--eps", ",".join(CLOSE), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())["results"]["A,C"]
    assert list(results) == list(CLOSE)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted({row["eps"] for row in samples}) == [float(e) for e in CLOSE]


@pytest.mark.parametrize("eps", ["0.05,0.05", "0.05,0.2,0.050"])
def test_repeated_eps_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], eps: str) -> None:
    assert main([*SMALL, "--eps", eps, "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert "--eps must be distinct budgets, got 0.05 more than once" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()
