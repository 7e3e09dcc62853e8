import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgewise.cli import main
from edgewise.eval import AttackResult
from edgewise.eval.distributed import Process, merge, shard_positions

CPU = torch.device("cpu")


def test_shards_are_whole_batches_covering_every_sample_once() -> None:
    shards = [shard_positions(23, 4, Process(rank, 3, CPU)) for rank in range(3)]
    assert shards[0].tolist() == [0, 1, 2, 3, 12, 13, 14, 15]
    assert shards[2].tolist() == [8, 9, 10, 11, 20, 21, 22]
    assert sorted(torch.cat(shards).tolist()) == list(range(23))
    with pytest.raises(ValueError, match="gives 2 batch"):
        shard_positions(8, 4, Process(0, 3, CPU))


def _result(indices: list[int]) -> AttackResult:
    n = len(indices)
    zeros = torch.zeros(n, dtype=torch.long)
    flags = torch.zeros(n, dtype=torch.bool)
    return AttackResult(
        adversarial=torch.arange(n, dtype=torch.float32).view(n, 1), labels=zeros, clean_prediction=zeros,
        adversarial_prediction=zeros, clean_correct=flags, success=flags, verified=flags,
        distances={"l2": torch.tensor(indices, dtype=torch.float32)}, forwards=torch.ones(n, dtype=torch.float64),
        backwards=torch.ones(n, dtype=torch.float64), first_adversarial=zeros,
        seconds=torch.ones(n, dtype=torch.float64), non_finite=flags, stalled=flags,
        indices=torch.tensor(indices),
    )


def test_merge_orders_by_index_and_checks_coverage() -> None:
    merged = merge([_result([2, 3]), _result([0, 1, 4])], count=5)
    assert merged.indices.tolist() == [0, 1, 2, 3, 4]
    assert merged.distances["l2"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert merged.adversarial.flatten().tolist() == [0.0, 1.0, 0.0, 1.0, 2.0]
    assert float(merged.forwards.sum()) == 5.0
    with pytest.raises(ValueError, match=r"missing \[4\], duplicated \[\]"):
        merge([_result([2, 3]), _result([0, 1])], count=5)
    with pytest.raises(ValueError, match=r"missing \[\], duplicated \[1\]"):
        merge([_result([2, 3, 1]), _result([0, 1, 4])], count=5)
    with pytest.raises(ValueError, match=r"missing \[0\], duplicated \[\], out of range \[-1, 5\]"):
        merge([_result([2, 3, -1]), _result([5, 1, 4])], count=5)


def _samples(folder: Path) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    for row in rows:
        del row["seconds"]
    return rows


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun is not installed beside this Python")
@pytest.mark.usefixtures("single_thread")
def test_two_processes_give_the_per_sample_results_of_one(tmp_path: Path) -> None:
    # pgd: its random start is drawn per batch, so a shard that split or mixed batches would change results.
    arguments = ["attack", "--attack", "pgd", "--steps", "10", "--samples", "22", "--batch-size", "4",
                 "--no-progress"]
    assert main([*arguments, "--out", str(tmp_path / "one")]) == 0
    torchrun = str(Path(sys.executable).parent / "torchrun")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "edgewise", *arguments,
                           "--out", str(tmp_path / "two")], capture_output=True, text=True, env=environment,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "two" / "shards").iterdir()) == [
        "shard-0000-of-0002.pt", "shard-0001-of-0002.pt"]
    one, two = _samples(tmp_path / "one"), _samples(tmp_path / "two")
    assert [row["index"] for row in two] == list(range(22))
    assert one == two
    summary = json.loads((tmp_path / "two" / "results.json").read_text())["summary"]
    assert summary["processes"] == 2 and summary["n"] == 22 and summary["forwards_per_sample"] == 10.0
