"""A folder in ImageFolder layout: one sub-folder per class, images inside (any depth): the files of
torchvision's ``IMG_EXTENSIONS`` (PNG, JPEG, BMP, WebP, TIFF, PPM/PGM), as its ``ImageFolder`` reads them.

Order (fixed, the order of dataset indices): class folders sorted by name (class index = position, hidden
folders skipped), then within each class the image paths sorted.

Channels: the first image decides. A gray one (mode ``1``, ``L``, ``LA`` or a 16-bit gray PNG) makes a 1-channel
folder, any other (RGB, RGBA, palette ``P``, CMYK, ...) a 3-channel one; alpha is dropped (not composited). A gray
image in a 3-channel folder is repeated to 3 channels; a colour image in a 1-channel folder is accepted only when
its three channels are equal, else it is an error (converting it to gray would lose its colour silently).

Depth: 8-bit (and 1-, 2- and 4-bit) images are scaled by 1/255, 16-bit gray PNGs by 1/65535. 16-bit colour or
gray+alpha PNGs are refused (PIL decodes them to 8 bits), as are images of other integer or float modes (their
range is unknown).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgewise.data.dataset import ImageDataset
from edgewise.data.idx import DataFileError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N")
"""PIL modes of gray images: older Pillows read a 16-bit gray PNG as ``I``, newer ones as ``I;16``."""
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _open(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise DataFileError(f"image {str(path)!r} is not a readable image (truncated or corrupt: {error})") \
            from error
    return image


def png_bit_depth(path: Path) -> int | None:
    """The bit depth per sample in a PNG's header (IHDR, byte 24 of the file); None for other files.

    PIL's mode does not tell it: a 16-bit RGB PNG opens as 8-bit ``RGB``."""
    with open(path, "rb") as handle:
        head = handle.read(25)
    if len(head) < 25 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24]


def read_image(path: Path, image: Any, channels: int) -> torch.Tensor:
    """``image`` (opened from ``path``) as a ``channels``×H×W tensor: uint8, or float in [0, 1] when 16-bit."""
    from torchvision.transforms.v2.functional import pil_to_tensor

    depth = png_bit_depth(path)
    if image.mode in WIDE_MODES:
        # Mode I (32-bit) is only known to hold 0-65535 when it was decoded from a 16-bit PNG.
        if image.mode == "I" and depth != 16:
            raise DataFileError(f"image {str(path)!r} has PIL mode I (32-bit integers) of unknown range: save it "
                                "as an 8- or 16-bit PNG")
        gray = torch.from_numpy(np.asarray(image).astype(np.float32) / 65535).unsqueeze(0)
        return gray.repeat(channels, 1, 1)
    if depth == 16:
        raise DataFileError(f"image {str(path)!r} is a 16-bit colour or gray+alpha PNG (PIL mode {image.mode}), "
                            "which PIL reads as 8 bits: save it as 8-bit, or as a float .npz")
    if image.mode == "F":
        raise DataFileError(f"image {str(path)!r} has PIL mode F (32-bit floats) of unknown range: save it as an "
                            "8- or 16-bit PNG, or as a float .npz")
    if image.mode in GRAY_MODES or channels == 3:
        tensor: torch.Tensor = pil_to_tensor(image.convert("L" if channels == 1 else "RGB"))
        return tensor
    color = pil_to_tensor(image.convert("RGB"))
    if not (torch.equal(color[0], color[1]) and torch.equal(color[1], color[2])):
        raise DataFileError(f"image {str(path)!r} is colour (PIL mode {image.mode}), the folder's first image is "
                            "gray: store all images of a folder in gray or all in colour")
    return color[:1].clone()


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
        self.channels = 1 if _open(self.paths[0]).mode in GRAY_MODES else 3
        super().__init__(files=self.paths, root=root, count=len(self.paths), num_classes=len(classes),
                         classes=classes, **kwargs)

    def raw(self, index: int) -> torch.Tensor:
        path = self.paths[index]
        return read_image(path, _open(path), self.channels)

    def describe(self, index: int) -> str:
        return f"image {str(self.paths[index])!r}"

    def label(self, index: int) -> int:
        return self.targets[index]
