"""The map-style dataset every data spec loads into: ``ds[i] -> (float image C×H×W in [0, 1], int label)``.

Images are loaded one at a time (index -> tensor), so evaluation streams batches and memory does not grow with
the number of samples. ``resize``/``center_crop`` apply per item: torchvision's ``resize`` (bilinear,
antialiased: a convex combination of pixels, so values stay in [0, 1]) on the float image, then
``center_crop``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from edgewise.data.idx import DataFileError
from edgewise.models.zoo import sha256_file

Size = int | tuple[int, int]


def check_size(name: str, value: Any) -> Size | None:
    """``--resize``/``--center-crop``: None, a positive int, or (height, width) positive ints."""
    if value is None:
        return None
    values = [value] if isinstance(value, int) else list(value) if isinstance(value, (list, tuple)) else None
    if (values is None or len(values) not in (1, 2)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)):
        raise ValueError(f"{name} must be a positive int or (height, width), got {value!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def check_labels(labels: torch.Tensor, count: int, classes: Sequence[str] | None, where: str) -> int:
    """Labels must be ints in [0, len(classes)) (or >= 0 without class names); returns the number of classes."""
    if labels.dim() != 1 or len(labels) != count:
        raise DataFileError(f"{where}: labels must be one int per image ({count}), got shape {tuple(labels.shape)}")
    if count == 0:
        raise DataFileError(f"{where}: holds no images")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (classes is not None and high >= len(classes)):
        limit = f"[0, {len(classes) - 1}] ({len(classes)} classes)" if classes is not None else ">= 0"
        raise DataFileError(f"{where}: labels must be in {limit}, got min {low} max {high}")
    return len(classes) if classes is not None else high + 1


class ImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Base of every loaded data spec. Subclasses implement :meth:`raw` (image ``index`` as a uint8 or float
    C×H×W tensor) and :meth:`label`; this class converts to float in [0, 1] and applies resize/center-crop.

    Attributes: ``num_classes``, ``classes`` (names, or None when the files do not give them), ``shape``
    (C, H, W of an item), ``identity`` (spec, split, resize, center_crop, sha256 of the files read; computed
    on first use, it reads every file once).
    """

    def __init__(self, *, spec: str, split: str | None, files: Sequence[Path], root: Path, count: int,
                 num_classes: int, classes: Sequence[str] | None, resize: Size | None = None,
                 center_crop: Size | None = None) -> None:
        self.spec = spec
        self.split = split
        self.files = list(files)
        self.root = root
        self.count = count
        self.num_classes = num_classes
        self.classes = list(classes) if classes is not None else None
        self.resize = check_size("--resize", resize)
        self.center_crop = check_size("--center-crop", center_crop)
        self.shape: tuple[int, int, int] = tuple(self[0][0].shape)  # type: ignore[assignment]

    def raw(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def label(self, index: int) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if isinstance(index, torch.Tensor):
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.count:
            raise IndexError(f"index must be an int in [0, {self.count - 1}], got {index!r}")
        image = self.raw(index)
        image = image.float().div_(255) if image.dtype == torch.uint8 else image.float()
        resized = ""
        if self.resize is not None or self.center_crop is not None:
            from torchvision.transforms.v2 import functional as F

            if self.resize is not None:
                image = F.resize(image, list(self.resize) if isinstance(self.resize, tuple) else [self.resize],
                                 antialias=True).clamp_(0, 1)
                resized = " after --resize"
            if self.center_crop is not None:
                crop = self.center_crop if isinstance(self.center_crop, tuple) else (self.center_crop,) * 2
                if crop[0] > image.shape[-2] or crop[1] > image.shape[-1]:
                    given = ",".join(map(str, crop)) if isinstance(self.center_crop, tuple) else self.center_crop
                    raise DataFileError(f"--center-crop {given} is larger than {self.describe(index)} "
                                        f"({image.shape[-2]}x{image.shape[-1]}{resized}), which torchvision would pad "
                                        "with zeros: give a smaller --center-crop, or a larger --resize")
                image = F.center_crop(image, list(crop))
        first = getattr(self, "shape", None)  # set from item 0 when the dataset is made: every item has its size
        if first is not None and tuple(image.shape) != first:
            raise DataFileError(f"{self.describe(index)} is {image.shape[-2]}x{image.shape[-1]}{resized} (height x "
                                f"width), the first image {first[1]}x{first[2]}: give --resize HEIGHT,WIDTH and/or "
                                "--center-crop")
        return image, self.label(index)

    def describe(self, index: int) -> str:
        """Item ``index`` as error messages name it."""
        return f"image {index} of --data {self.spec!r}"

    @cached_property
    def identity(self) -> dict[str, Any]:
        digests = {str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path):
                   sha256_file(path) for path in self.files}
        combined = hashlib.sha256("".join(f"{name} {digest}\n" for name, digest in digests.items()).encode())
        return {
            "spec": self.spec, "split": self.split, "resize": self.resize, "center_crop": self.center_crop,
            "num_samples": self.count, "shape": list(self.shape), "num_classes": self.num_classes,
            "sha256": combined.hexdigest(), "files": digests if len(digests) <= 10 else len(digests),
        }


class TensorImages(ImageDataset):
    """Images already in memory (the IDX and CIFAR formats, small enough to decode whole): uint8 or float
    N×C×H×W and int labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, **kwargs: Any) -> None:
        self.images = images
        self.labels = labels.long()
        super().__init__(count=len(images), **kwargs)

    def raw(self, index: int) -> torch.Tensor:
        return self.images[index]

    def label(self, index: int) -> int:
        return int(self.labels[index])
