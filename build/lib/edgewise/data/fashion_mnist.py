"""Fashion-MNIST (Xiao et al., 2017) from IDX files: a given root, Debian's package, or torchvision's download."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch

from edgewise.data.idx import DataFileError, read_idx

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
HOW_TO_GET = (
    "Install it with `apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist), "
    "or pass root= a folder holding the four IDX .gz files of Fashion-MNIST."
)


def _torchvision_root() -> Path | None:
    """Download Fashion-MNIST with torchvision; None when there is no network or no torchvision."""
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError:
        return None
    cache = Path.home() / ".cache" / "edgewise"
    try:
        FashionMNIST(str(cache), download=True)
    except (OSError, RuntimeError):
        return None
    return cache / "FashionMNIST" / "raw"


def find_root(split: str) -> Path:
    """The folder holding Fashion-MNIST's IDX files of ``split``: Debian's package, else a torchvision download."""
    images = _FILES[split][0]
    if (DEBIAN_ROOT / images).is_file():
        return DEBIAN_ROOT
    downloaded = _torchvision_root()
    if downloaded is not None and (downloaded / images).is_file():
        return downloaded
    raise DataFileError(f"Fashion-MNIST file {images!r} was not found and could not be downloaded. {HOW_TO_GET}")


def _as_tensors(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return images.unsqueeze(1).float().div_(255), labels.long()


def fashion_mnist(split: str, root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` ("train" or "test") as float images (N, 1, 28, 28) in [0, 1] and int64 labels.

    Files are read from ``root`` when given, else from the Debian package ``dataset-fashion-mnist``, else
    downloaded by torchvision when a network is there. Magic numbers, shapes and counts are validated.
    """
    if split not in _FILES:
        raise ValueError(f"split must be one of {sorted(_FILES)}, got {split!r}")
    image_file, label_file, count = _FILES[split]
    folder = Path(root) if root is not None else find_root(split)
    images = read_idx(folder / image_file, ndim=3, how_to_get=HOW_TO_GET)
    labels = read_idx(folder / label_file, ndim=1, how_to_get=HOW_TO_GET)
    if images.shape != (count, 28, 28) or labels.shape != (count,):
        raise DataFileError(
            f"Fashion-MNIST {split} in {str(folder)!r} has images {tuple(images.shape)} and labels "
            f"{tuple(labels.shape)}, expected ({count}, 28, 28) and ({count},). {HOW_TO_GET}"
        )
    if int(labels.max()) >= len(CLASSES):
        raise DataFileError(f"Fashion-MNIST labels in {str(folder / label_file)!r} exceed 9. {HOW_TO_GET}")
    return _as_tensors(images, labels)


def sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped sample: 1,000 Fashion-MNIST test images, the first 100 of each class in test-set order.

    Their indices in the test set are in ``sample_indices()``. Needs nothing outside the package.
    """
    files = resources.files("edgewise.data") / "files"
    with resources.as_file(files / "sample-images-idx3-ubyte.gz") as image_path, resources.as_file(
        files / "sample-labels-idx1-ubyte.gz"
    ) as label_path:
        images = read_idx(image_path, ndim=3)
        labels = read_idx(label_path, ndim=1)
    return _as_tensors(images, labels)


def sample_indices() -> list[int]:
    """Indices in the Fashion-MNIST test set of the images of :func:`sample`, in order."""
    text = (resources.files("edgewise.data") / "files" / "sample-indices.json").read_text()
    return list(json.loads(text)["test_indices"])
