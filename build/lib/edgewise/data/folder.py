"""A folder in ImageFolder layout: one sub-folder per class, PNG/JPEG images inside (any depth).

Order (fixed, the order of dataset indices): class folders sorted by name (class index = position, hidden
folders skipped), then within each class the image paths sorted. Gray images (the first image's mode is
``L``, ``1``, ``I`` or ``I;16``) give 1 channel, all others are converted to RGB (3 channels); every image is
converted to the first image's channel count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from edgewise.data.dataset import ImageDataset
from edgewise.data.idx import DataFileError

EXTENSIONS = (".png", ".jpg", ".jpeg")
GRAY_MODES = ("1", "L", "I", "I;16")


def _open(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataFileError(f"image {str(path)!r} is not a readable PNG/JPEG (truncated or corrupt: {error})") \
            from error
    return image


class ImageFolder(ImageDataset):
    def __init__(self, root: Path, **kwargs: Any) -> None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataFileError(f"--data {str(root)!r} is empty: an image folder needs one sub-folder per class "
                                f"holding {'/'.join(EXTENSIONS)} images")
        self.paths: list[Path] = []
        self.targets: list[int] = []
        for index, name in enumerate(classes):
            found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
            if not found:
                raise DataFileError(f"--data {str(root)!r}: class folder {name!r} holds no "
                                    f"{'/'.join(EXTENSIONS)} images")
            self.paths += found
            self.targets += [index] * len(found)
        self.mode = "L" if _open(self.paths[0]).mode in GRAY_MODES else "RGB"
        self.size: tuple[int, int] | None = None
        super().__init__(files=self.paths, root=root, count=len(self.paths), num_classes=len(classes),
                         classes=classes, **kwargs)

    def raw(self, index: int) -> torch.Tensor:
        from torchvision.transforms.v2.functional import pil_to_tensor

        path = self.paths[index]
        image = _open(path)
        if self.size is None:
            self.size = image.size
        elif image.size != self.size and self.resize is None and self.center_crop is None:
            raise DataFileError(f"image {str(path)!r} is {image.size[0]}x{image.size[1]}, the first image "
                                f"{self.size[0]}x{self.size[1]}: give --resize and/or --center-crop")
        tensor: torch.Tensor = pil_to_tensor(image.convert(self.mode))
        return tensor

    def label(self, index: int) -> int:
        return self.targets[index]
