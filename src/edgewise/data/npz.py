"""An ``.npz`` with arrays ``x`` (N×C×H×W or N×H×W×C, or N×H×W for gray; uint8 0-255 or float in [0, 1])
and ``y`` (N int labels), optionally ``classes`` (N_classes names). A uint8 ``x`` holding only 0 and 1 (a mask
saved as uint8) is read as 0 and 1/255, with a warning.

``x`` of an uncompressed ``.npz`` (``numpy.savez``) is read one image at a time at its offset inside the zip
member, so streaming any number of images does not grow memory (``np.load(mmap_mode=...)`` does not map
``.npz`` members). ``x`` of a compressed ``.npz`` (``numpy.savez_compressed``) or in Fortran order is read
whole into memory. The layout: N×C×H×W when dimension 1 is 1 or 3 (channels), else N×H×W×C when the last is.
"""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgewise.data.dataset import ImageDataset, check_labels
from edgewise.data.idx import DataFileError

CHANNELS = (1, 3)
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header: 30 bytes, name and extra lengths last


def _member(path: Path, name: str) -> tuple[int, tuple[int, ...], np.dtype[Any]] | None:
    """(offset of the array's data in the file, shape, dtype) of the stored, C-ordered member ``name``.npy;
    None when it is compressed or in Fortran order (then it is read whole)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        signature, *_, name_length, extra_length = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise DataFileError(f"--data {str(path)!r}: member {name}.npy has a corrupt zip header")
        handle.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(handle)
        offset = handle.tell()
    if fortran_order:
        return None
    return offset, tuple(shape), dtype


def _layout(shape: tuple[int, ...], path: Path) -> str:
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4 and shape[1] in CHANNELS:
        return "NCHW"
    if len(shape) == 4 and shape[3] in CHANNELS:
        return "NHWC"
    raise DataFileError(f"--data {str(path)!r}: x must be N×C×H×W or N×H×W×C with C 1 or 3 (or N×H×W), got "
                        f"shape {shape}")


class NpzImages(ImageDataset):
    def __init__(self, path: Path, **kwargs: Any) -> None:
        self.path = path
        try:
            archive = np.load(path, allow_pickle=False)
            members = set(archive.files)
            if not {"x", "y"} <= members:
                raise DataFileError(f"--data {str(path)!r} must hold arrays x and y, got {sorted(members)}")
            labels = archive["y"]
            classes = [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c)
                       for c in archive["classes"]] if "classes" in members else None
            stored = _member(path, "x")
            self.array: np.ndarray[Any, Any] | None = archive["x"] if stored is None else None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            if isinstance(error, DataFileError):
                raise
            raise DataFileError(f"--data {str(path)!r} is not a readable .npz (truncated or corrupt: {error})") \
                from error
        shape, dtype = (self.array.shape, self.array.dtype) if self.array is not None else stored[1:]  # type: ignore[index]
        self.offset = stored[0] if stored is not None else 0
        self.layout = _layout(tuple(shape), path)
        if not (dtype == np.uint8 or np.issubdtype(dtype, np.floating)):
            raise DataFileError(f"--data {str(path)!r}: x must be uint8 (0-255) or float in [0, 1], got {dtype}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataFileError(f"--data {str(path)!r}: y must hold integer labels, got {labels.dtype}")
        self.dtype = np.dtype(dtype)
        self.item_shape = tuple(shape[1:])
        self.item_bytes = int(np.prod(self.item_shape)) * self.dtype.itemsize
        if stored is not None:
            expected = self.offset + shape[0] * self.item_bytes
            if path.stat().st_size < expected:
                raise DataFileError(f"--data {str(path)!r} is truncated: x needs {expected} bytes, the file has "
                                    f"{path.stat().st_size}")
        self.labels = torch.from_numpy(labels.astype(np.int64))
        num_classes = check_labels(self.labels, shape[0], classes, f"--data {str(path)!r}")
        if self.dtype != np.uint8:
            self._check_range(shape[0])
        elif self._binary(shape[0]):
            # stacklevel 3: the line calling edgewise.data.load
            warnings.warn(f"--data {str(path)!r}: uint8 x holds only 0 and 1; uint8 images are read as 0-255, "
                          "so these are 0 and 1/255: store 0 and 255, or floats in [0, 1]", UserWarning,
                          stacklevel=3)
        super().__init__(files=[path], root=path.parent, count=shape[0], num_classes=num_classes, classes=classes,
                         **kwargs)

    def _check_range(self, count: int) -> None:
        """Floats must be finite and in [0, 1]: checked in chunks of images, so memory stays bounded."""
        low, high = np.inf, -np.inf
        chunk = max(1, (64 << 20) // self.item_bytes)
        for start in range(0, count, chunk):
            block = self._read(start, min(count, start + chunk))
            if not np.isfinite(block).all():
                raise DataFileError(f"--data {str(self.path)!r}: x holds NaN or inf values")
            low, high = min(low, float(block.min())), max(high, float(block.max()))
        if low < 0 or high > 1:
            raise DataFileError(f"--data {str(self.path)!r}: float x must be in [0, 1], got min {low:.4g} max "
                                f"{high:.4g}; store unnormalized images and give the normalization with "
                                "--mean/--std (the model then sees (x - mean) / std)")

    def _binary(self, count: int) -> bool:
        """Whether uint8 x holds only 0 and 1 (a mask, likely not meant as 0-255); stops at the first chunk
        holding a larger value, so real images cost one chunk."""
        chunk = max(1, (64 << 20) // self.item_bytes)
        return all(int(self._read(start, min(count, start + chunk)).max()) <= 1 for start in range(0, count, chunk))

    def _read(self, start: int, stop: int) -> np.ndarray[Any, Any]:
        if self.array is not None:
            return np.asarray(self.array[start:stop])
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + start * self.item_bytes)
            data = handle.read((stop - start) * self.item_bytes)
        if len(data) != (stop - start) * self.item_bytes:
            raise DataFileError(f"--data {str(self.path)!r} is truncated at image {start}")
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, *self.item_shape)

    def raw(self, index: int) -> torch.Tensor:
        image = torch.from_numpy(np.array(self._read(index, index + 1)[0], dtype=self.dtype.newbyteorder("=")))
        if self.layout == "NHW":
            return image.unsqueeze(0)
        return image.permute(2, 0, 1) if self.layout == "NHWC" else image

    def label(self, index: int) -> int:
        return int(self.labels[index])
