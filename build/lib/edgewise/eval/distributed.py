"""Sharded evaluation under ``torchrun``: one shard of whole batches per process, merged on rank 0.

Evaluation is independent per sample (DESIGN.md, Scale). Shard ``rank`` of ``world`` takes the global batches
``k`` (samples ``k * batch_size ... (k + 1) * batch_size - 1``) with ``k % world == rank``. Sharding whole
batches keeps every sample in the batch it has in a single-process run, with the generator seeded from the
batch's first index, so per-sample results do not depend on the number of processes, bit for bit (floating-point
reductions over a batch and random draws of shape (B, ...) depend on the batch's members). Each process writes
its shard file; rank 0 gathers the shards (no shared filesystem needed), checks that every sample is covered
exactly once and orders them as the run's dataset indices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from edgewise.eval.result import AttackResult
from edgewise.eval.run import _save_atomic
from edgewise.validation import check_device


@dataclass(frozen=True)
class Process:
    """This process's place in the run: ``rank`` of ``world`` processes, computing on ``device``."""

    rank: int
    world: int
    device: torch.device


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str | torch.device) -> Process:
    """Join the process group when launched by torchrun: gloo on the CPU, nccl on CUDA with ``cuda:LOCAL_RANK``.

    Without a launcher: rank 0 of 1 on ``device``.
    """
    chosen = check_device(device)
    if not launched():
        return Process(0, 1, chosen)
    if chosen.type == "cuda":
        chosen = check_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(chosen)
    dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return Process(dist.get_rank(), dist.get_world_size(), chosen)


def stop(process: Process) -> None:
    """Leave the process group (a no-op for a single process)."""
    if process.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def shard_positions(count: int, batch_size: int, process: Process) -> torch.Tensor:
    """Positions (0..count-1) of the samples of ``process``'s shard: the global batches ``k % world == rank``."""
    batches = torch.arange(count).split(batch_size)
    if len(batches) < process.world:
        raise ValueError(f"count {count} with batch_size {batch_size} gives {len(batches)} batch(es), fewer than "
                         f"the {process.world} processes: use smaller batches or fewer processes")
    return torch.cat(batches[process.rank::process.world])


def shard_path(folder: Path, process: Process) -> Path:
    return folder / f"shard-{process.rank:04d}-of-{process.world:04d}.pt"


def _expected(count: int | None, indices: torch.Tensor | None) -> torch.Tensor:
    if indices is not None and count is None:
        return indices.cpu().long()
    if count is not None and indices is None:
        return torch.arange(count)
    raise TypeError("give exactly one of count (samples 0..count-1) and indices (the dataset indices)")


def merge(parts: list[AttackResult], *, count: int | None = None, indices: torch.Tensor | None = None
          ) -> AttackResult:
    """Join shard results in the order of the dataset ``indices`` the run covers (or 0..``count``-1); every one
    must appear exactly once."""
    expected = _expected(count, indices)
    joined = AttackResult.concatenate(parts)
    order = joined.indices.argsort(stable=True)
    wanted = expected.argsort(stable=True)
    got, sorted_expected = joined.indices[order], expected[wanted]
    if not torch.equal(got, sorted_expected):
        top = int(max(got.max(), sorted_expected.max())) + 1 if len(got) else len(expected)
        low = min(int(got.min()), 0) if len(got) else 0
        seen = torch.bincount(got - low, minlength=top - low)
        want = torch.bincount(sorted_expected - low, minlength=top - low)
        missing = (torch.nonzero(seen < want).flatten() + low).tolist()
        duplicated = (torch.nonzero((seen > want) & (want > 0)).flatten() + low).tolist()
        extra = (torch.nonzero((seen > 0) & (want == 0)).flatten() + low).tolist()
        what = f"the {len(expected)} dataset indices" if indices is not None else f"samples 0..{len(expected) - 1}"
        raise ValueError(f"shards must cover {what} exactly once, got missing {missing[:10]}, duplicated "
                         f"{duplicated[:10]}, out of range {extra[:10]}")
    # Row order[r] holds the r-th smallest index; expected[p] is the rank(p)-th smallest.
    return joined.take(order[wanted.argsort(stable=True)])


def gather(result: AttackResult, folder: Path, process: Process, *, count: int | None = None,
           indices: torch.Tensor | None = None) -> AttackResult | None:
    """Write this shard's file, then merge all shards on rank 0 (returned there; None on the other ranks).

    ``count`` or ``indices``: what the whole run covers (see :func:`merge`)."""
    _expected(count, indices)
    folder.mkdir(parents=True, exist_ok=True)
    _save_atomic(vars(result), shard_path(folder, process))
    if process.world == 1:
        return merge([result], count=count, indices=indices)
    received: list[dict[str, Any] | None] = [None] * process.world if process.rank == 0 else []
    dist.gather_object(vars(result), received if process.rank == 0 else None, dst=0)
    if process.rank != 0:
        return None
    return merge([AttackResult(**part) for part in received if part is not None], count=count, indices=indices)
