import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edgewise.attacks import ddn
from edgewise.cli import main
from edgewise.data import sample
from edgewise.eval import AttackResult, distributed, run_attack
from edgewise.eval.distributed import Process, gather, launched, merge, shard_path, shard_positions

from ..conftest import make_linear_oracle  # type: ignore[import-not-found]

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


def test_merge_follows_the_runs_dataset_indices() -> None:
    merged = merge([_result([40, 7]), _result([13, 2, 99])], indices=torch.tensor([99, 2, 40, 13, 7]))
    assert merged.indices.tolist() == [99, 2, 40, 13, 7]
    assert merged.distances["l2"].tolist() == [99.0, 2.0, 40.0, 13.0, 7.0]
    assert merged.adversarial.flatten().tolist() == [2.0, 1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"cover the 3 dataset indices exactly once, got missing \[40\], duplicated "
                                         r"\[\], out of range \[13\]"):
        merge([_result([13, 2, 99])], indices=torch.tensor([99, 2, 40]))
    with pytest.raises(TypeError, match="exactly one of count"):
        merge([_result([0])], count=1, indices=torch.tensor([0]))


def test_merge_of_no_samples_names_every_missing_one() -> None:
    with pytest.raises(ValueError, match=r"cover samples 0\.\.2 exactly once, got missing \[0, 1, 2\], dupl"):
        merge([replace(_result([]), indices=torch.empty(0, dtype=torch.long))], count=3)


def test_without_a_launcher_the_run_is_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not launched() and distributed.start("cpu") == Process(0, 1, CPU)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched() and distributed.start("cpu") == Process(0, 1, CPU)


def test_under_a_launcher_the_process_joins_a_gloo_group_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # torchrun's environment for rank 1 of 2; the process group is faked (a real one needs the other process).
    joined: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: joined.append(backend))
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    assert launched() and distributed.start("cpu") == Process(1, 2, CPU) and joined == ["gloo"]


def test_gather_on_one_process_writes_its_shard_and_orders_the_samples(tmp_path: Path) -> None:
    process = Process(0, 1, CPU)
    merged = gather(_result([40, 7]), tmp_path, process, indices=torch.tensor([7, 40]))
    assert merged is not None and merged.indices.tolist() == [7, 40] and merged.distances["l2"].tolist() == [7, 40]
    written = torch.load(shard_path(tmp_path, process), weights_only=False)
    assert written["indices"].tolist() == [40, 7]
    counted = gather(_result([1, 0]), tmp_path / "count", process, count=2)
    assert counted is not None and counted.indices.tolist() == [0, 1]


def test_gather_on_rank_0_merges_the_shards_of_every_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.distributed.gather_object fills rank 0's list with every rank's object (faked: one process here).
    def gather_object(obj, object_gather_list=None, dst=0):
        assert dst == 0
        if object_gather_list is not None:
            object_gather_list[:] = [obj, vars(_result([13, 2]))]

    monkeypatch.setattr(torch.distributed, "gather_object", gather_object)
    merged = gather(_result([40]), tmp_path, Process(0, 2, CPU), indices=torch.tensor([2, 40, 13]))
    assert merged is not None and merged.indices.tolist() == [2, 40, 13]
    assert gather(_result([13, 2]), tmp_path, Process(1, 2, CPU), indices=torch.tensor([2, 40, 13])) is None
    assert shard_path(tmp_path, Process(1, 2, CPU)).is_file()


class Images:
    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index].clone(), int(self.labels[index])


class Spy:
    """ddn (no quantization), logging the batches it is given."""

    def __init__(self) -> None:
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, model, inputs, labels):
        self.seen.append((inputs.clone(), labels.clone()))
        return ddn(model, inputs, labels, steps=8, levels=None)


def test_ranks_sharing_a_folder_and_restarts_keep_sample_identity(tmp_path: Path) -> None:
    o = make_linear_oracle(batch=12, seed=3)
    dataset = Images(o.inputs, o.labels)
    picked = torch.tensor([11, 3, 5, 0, 9, 7, 2, 10, 4])  # 5 batches of 2: not 0..n-1, not sorted
    batch_size, folder = 2, tmp_path / "batches"
    # What each sample must get, computed without run_attack: its global batch (members picked[2k:2k+2])
    # attacked as a whole, the result re-verified by hand.
    expected_l2 = torch.empty(len(picked))
    expected_adversarial = torch.empty(len(picked), *o.inputs.shape[1:])
    for start in range(0, len(picked), batch_size):
        members = picked[start:start + batch_size]
        x, y = o.inputs[members], o.labels[members]
        adversarial = ddn(o.model, x, y, steps=8, levels=None)
        broken = o.model(adversarial).argmax(1) != y
        expected_l2[start:start + batch_size] = torch.where(broken, (adversarial - x).flatten(1).norm(dim=1),
                                                            torch.tensor(float("inf")))
        expected_adversarial[start:start + batch_size] = torch.where(broken.view(-1, 1, 1, 1), adversarial, x)

    def shard(rank: int, world: int, spy: Spy) -> AttackResult:
        positions = shard_positions(len(picked), batch_size, Process(rank, world, CPU))
        return run_attack(o.model, dataset, None, spy, indices=picked[positions], batch_size=batch_size,
                          resume_dir=folder, progress=False, checks=False, keep_adversarial=True)

    def check(result: AttackResult) -> None:
        assert result.indices.tolist() == picked.tolist()
        assert torch.equal(result.labels, o.labels[picked])
        torch.testing.assert_close(result.distances["l2"], expected_l2, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.adversarial, expected_adversarial, rtol=0, atol=1e-6)

    spies = [Spy(), Spy()]
    merged = merge([shard(rank, 2, spies[rank]) for rank in (1, 0)], indices=picked)
    check(merged)
    # Each rank was given exactly the images and labels of its own whole batches.
    for rank, spy in enumerate(spies):
        batches = picked.split(batch_size)[rank::2]
        assert len(spy.seen) == len(batches)
        for (x, y), members in zip(spy.seen, batches, strict=True):
            assert torch.equal(x, o.inputs[members]) and torch.equal(y, o.labels[members])
    assert sorted(p.name for p in folder.glob("*.pt")) == sorted(
        f"batch-{int(members[0]):08d}-2.pt" for members in picked.split(batch_size))
    # A restart as one process on the folder both ranks wrote: nothing is recomputed, every sample the same.
    again = Spy()
    check(shard(0, 1, again))
    assert again.seen == []
    # Rank 1 interrupted (its last batch, samples 2 and 10, lost), restarted with three processes: only that
    # batch is computed, by the rank it now falls to (global batch 3: rank 0 of 3).
    (folder / "batch-00000002-2.pt").unlink()
    restarted = [Spy(), Spy(), Spy()]
    check(merge([shard(rank, 3, restarted[rank]) for rank in range(3)], indices=picked))
    assert [len(spy.seen) for spy in restarted] == [1, 0, 0]
    assert torch.equal(restarted[0].seen[0][0], o.inputs[torch.tensor([2, 10])])


def test_a_larger_sharded_run_computes_only_what_is_missing(tmp_path: Path) -> None:
    o = make_linear_oracle(batch=12, seed=4)
    dataset = Images(o.inputs, o.labels)
    attack = functools.partial(ddn, steps=5, levels=None)
    calls: list[torch.Tensor] = []

    def spy(model, inputs, labels):
        calls.append(inputs)
        return attack(model, inputs, labels)

    def sharded(n: int) -> AttackResult:
        parts = []
        for rank in range(2):
            positions = shard_positions(n, 4, Process(rank, 2, CPU))
            parts.append(run_attack(o.model, dataset, None, spy, indices=positions, batch_size=4,
                                    resume_dir=tmp_path, progress=False, checks=False))
        return merge(parts, count=n)

    sharded(6)
    assert [len(c) for c in calls] == [4, 2]
    larger = sharded(12)
    # Rank 0: batch 0.. reused, batch 8.. new; rank 1: batch 4.. grew from 2 to 4 members, redone whole.
    assert [len(c) for c in calls] == [4, 2, 4, 4]
    assert torch.equal(calls[2], o.inputs[8:12]) and torch.equal(calls[3], o.inputs[4:8])
    fresh = run_attack(o.model, dataset, None, attack, batch_size=4, progress=False, checks=False)
    assert larger.indices.tolist() == list(range(12)) and torch.equal(larger.labels, o.labels)
    assert torch.equal(larger.distances["l2"], fresh.distances["l2"])


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
    # Non-default dataset indices, unsorted, so that positions and dataset indices differ.
    chosen = [int(i) for i in torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:22]]
    arguments = ["attack", "--attack", "pgd", "--steps", "10", "--indices", ",".join(map(str, chosen)),
                 "--batch-size", "4", "--no-progress"]
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
    # Sample identity against the shipped sample read directly: the indices asked for, their labels.
    _, labels = sample()
    assert [row["index"] for row in two] == chosen
    assert [row["label"] for row in two] == labels[chosen].tolist()
    assert one == two
    summary = json.loads((tmp_path / "two" / "results.json").read_text())["summary"]
    assert summary["processes"] == 2 and summary["n"] == 22 and summary["forwards_per_sample"] == 10.0
    # Restarted as one process on the folder both ranks wrote: every batch is reused, nothing recomputed.
    batches = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two" / "batches").glob("batch-*.pt")}
    assert len(batches) == 6
    assert main([*arguments, "--out", str(tmp_path / "two")]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two" / "batches").glob("batch-*.pt")} == batches
    assert _samples(tmp_path / "two") == one
