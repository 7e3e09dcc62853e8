"""Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or not, with validation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

_DTYPE_CODES = {0x08: torch.uint8}


class DataFileError(ValueError):
    """A data file is missing, truncated or not in the expected format."""


def read_idx(path: str | Path, *, ndim: int, how_to_get: str = "") -> torch.Tensor:
    """Read an IDX file (optionally ``.gz``) of unsigned bytes with exactly ``ndim`` dimensions.

    Raises :class:`DataFileError` naming the file when it is missing, truncated, or has a wrong magic number.
    """
    path = Path(path)
    hint = f" {how_to_get}" if how_to_get else ""
    if not path.is_file():
        raise DataFileError(f"data file {str(path)!r} does not exist.{hint}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise DataFileError(f"data file {str(path)!r} is not a readable gzip file ({error}).{hint}") from error
    if len(raw) < 4:
        raise DataFileError(f"data file {str(path)!r} is truncated: {len(raw)} bytes.{hint}")
    zero, code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _DTYPE_CODES or dims != ndim:
        raise DataFileError(
            f"data file {str(path)!r} has magic number {raw[:4].hex()}, expected 0000 08 {ndim:02x} "
            f"(unsigned bytes, {ndim} dimensions).{hint}"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFileError(f"data file {str(path)!r} is truncated inside its header.{hint}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(torch.tensor(shape).prod().item())
    if len(raw) != expected:
        raise DataFileError(
            f"data file {str(path)!r} holds {len(raw)} bytes, expected {expected} for shape {shape}.{hint}"
        )
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(shape).clone()


def write_idx(path: str | Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as a gzip-compressed IDX file (used to build the shipped sample)."""
    if array.dtype != torch.uint8:
        raise TypeError(f"array must be uint8, got {array.dtype}")
    header = struct.pack(">HBB", 0, 0x08, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    Path(path).write_bytes(gzip.compress(header + array.contiguous().numpy().tobytes(), mtime=0))
