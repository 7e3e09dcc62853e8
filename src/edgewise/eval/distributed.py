"""Sharded evaluation under ``torchrun``: one shard of whole batches per process, merged on rank 0.

Evaluation is independent per sample (DESIGN.md, Scale). Shard ``rank`` of ``world`` takes the global batches
``k`` (samples ``k * batch_size ... (k + 1) * batch_size - 1``) with ``k % world == rank``. Sharding whole
batches keeps every sample in the batch it has in a single-process run, with the generator seeded from the
batch's first index, so per-sample results do not depend on the number of processes, bit for bit (floating-point
reductions over a batch and random draws of shape (B, ...) depend on the batch's members). Each process writes
its shard file, its rows with their positions in the run; rank 0 gathers the shards (no shared filesystem
needed), checks that every position is covered exactly once, by the dataset index the run has there, and puts
each row at its position. Rows are placed by position, not by dataset index: a run may list one dataset index at
two positions, whose results (computed in different batches) must not be swapped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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


def _check_positions(positions: object, part: AttackResult, name: str) -> torch.Tensor:
    """``positions`` as a CPU int64 tensor, checked to give one run position per row of ``part``."""
    if not isinstance(positions, torch.Tensor) or positions.is_floating_point() or positions.dtype == torch.bool \
            or positions.shape != (len(part),):
        got = (f"dtype {positions.dtype} shape {tuple(positions.shape)}" if isinstance(positions, torch.Tensor)
               else type(positions).__name__)
        raise ValueError(f"{name} must be an integer tensor of shape ({len(part)},) (a run position per row of "
                         f"its result), got {got}")
    return positions.cpu().long()


def merge(parts: Sequence[AttackResult], *, positions: Sequence[torch.Tensor], count: int | None = None,
          indices: torch.Tensor | None = None) -> AttackResult:
    """Join shard results in the run's order: ``positions[k]`` holds the run positions of ``parts[k]``'s rows
    (:func:`shard_positions`); the run covers the dataset ``indices`` (or 0..``count``-1). Every position must
    be covered exactly once, by a row of the dataset index the run has there."""
    expected = _expected(count, indices)
    if not isinstance(positions, Sequence) or len(positions) != len(parts):
        got = f"{len(positions)} of them" if isinstance(positions, Sequence) else type(positions).__name__
        raise ValueError(f"positions must hold one tensor per part ({len(parts)}), got {got}")
    places = [_check_positions(where, part, f"positions[{k}]")
              for k, (where, part) in enumerate(zip(positions, parts, strict=True))]
    joined = AttackResult.concatenate(list(parts))
    where = torch.cat(places)
    total = len(expected)
    inside = (where >= 0) & (where < total)
    seen = torch.bincount(where[inside], minlength=total)
    if not bool(inside.all()) or bool((seen != 1).any()):
        missing = torch.nonzero(seen == 0).flatten()
        duplicated = torch.nonzero(seen > 1).flatten().tolist()
        outside = where[~inside].tolist()
        raise ValueError(f"shards must cover the run's {total} positions exactly once, got missing "
                         f"{missing[:10].tolist()} (dataset indices {expected[missing[:10]].tolist()}), duplicated "
                         f"{duplicated[:10]}, out of range {outside[:10]}")
    wrong = torch.nonzero(joined.indices != expected[where]).flatten()
    if len(wrong):
        row = int(wrong[0])
        raise ValueError(f"shards must hold at each position the dataset index the run has there, got {len(wrong)} "
                         f"row(s) that do not, the first: index {int(joined.indices[row])} at position "
                         f"{int(where[row])}, where the run has {int(expected[where[row]])}")
    return joined.take(where.argsort())


def gather(result: AttackResult, folder: Path, process: Process, *, positions: torch.Tensor,
           count: int | None = None, indices: torch.Tensor | None = None) -> AttackResult | None:
    """Write this shard's file (its ``result`` with the run ``positions`` of its rows, as :func:`shard_positions`
    gives them), then merge all shards on rank 0 (returned there; None on the other ranks).

    ``count`` or ``indices``: what the whole run covers (see :func:`merge`)."""
    _expected(count, indices)
    mine = _check_positions(positions, result, "positions")
    shard = {"positions": mine, "result": vars(result)}
    folder.mkdir(parents=True, exist_ok=True)
    _save_atomic(shard, shard_path(folder, process))
    if process.world == 1:
        return merge([result], positions=[mine], count=count, indices=indices)
    received: list[dict[str, Any] | None] = [None] * process.world if process.rank == 0 else []
    dist.gather_object(shard, received if process.rank == 0 else None, dst=0)
    if process.rank != 0:
        return None
    shards = [part for part in received if part is not None]
    return merge([AttackResult(**part["result"]) for part in shards], positions=[part["positions"] for part in shards],
                 count=count, indices=indices)
