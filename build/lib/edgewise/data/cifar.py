"""CIFAR-10 / CIFAR-100 in their "python version" folders (Krizhevsky, 2009).

CIFAR-10: ``data_batch_1`` ... ``data_batch_5`` (split ``train``, in that order) and ``test_batch`` (``test``),
class names in ``batches.meta``. CIFAR-100: ``train`` and ``test``, the 100 fine labels, names in ``meta``.
Each file is a pickle of a dict with ``data`` (N×3072 uint8, the 1024 red, then green, then blue values of a
32×32 image, rows first) and ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). The pickles are read with
an unpickler that builds only numpy arrays and plain containers, never arbitrary objects.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgewise.data.dataset import TensorImages, check_labels
from edgewise.data.idx import DataFileError

SPLITS = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}
META = {"cifar10": ("batches.meta", "label_names", "labels"), "cifar100": ("meta", "fine_label_names", "fine_labels")}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to build {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            loaded = _ArraysOnly(handle, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DataFileError(f"CIFAR file {str(path)!r} is not a readable CIFAR python batch (truncated or "
                            f"corrupt: {error})") from error
    if not isinstance(loaded, dict):
        raise DataFileError(f"CIFAR file {str(path)!r} must hold a dict, got {type(loaded).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in loaded.items()}


def flavour(root: Path) -> str | None:
    """"cifar10" or "cifar100" when ``root`` holds files of that layout, else None."""
    if any((root / f).is_file() for f in ("test_batch", "data_batch_1", "batches.meta")):
        return "cifar10"
    if (root / "meta").is_file() and any((root / f).is_file() for f in ("train", "test")):
        return "cifar100"
    return None


def load_cifar(root: Path, *, spec: str, split: str | None, **kwargs: Any) -> TensorImages:
    """The CIFAR folder ``root``'s ``split`` (default ``test``) as uint8 images in memory (CIFAR-10's test set
    is 30 MB)."""
    name = flavour(root)
    if name is None:
        raise DataFileError(f"--data {str(root)!r} is not a CIFAR python-batch folder")
    chosen = "test" if split is None else split
    if chosen not in SPLITS[name]:
        raise ValueError(f"--split must be one of {sorted(SPLITS[name])} for a {name} folder, got {split!r}")
    files = [root / f for f in SPLITS[name][chosen]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise DataFileError(f"--data {str(root)!r} lacks the {chosen} files {', '.join(missing)} of {name}")
    meta_file, names_key, labels_key = META[name]
    classes = None
    if (root / meta_file).is_file():
        meta = _unpickle(root / meta_file)
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta.get(names_key, [])] or None
    images, labels = [], []
    for path in files:
        batch = _unpickle(path)
        key = next((k for k in (labels_key, "labels") if k in batch), None)
        data = batch.get("data")
        if key is None or not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != 3 * 32 * 32:
            raise DataFileError(f"CIFAR file {str(path)!r} must hold data (N×3072 uint8) and {labels_key}")
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(torch.as_tensor(np.asarray(batch[key], dtype=np.int64)))
    x, y = torch.cat(images), torch.cat(labels)
    num_classes = check_labels(y, len(x), classes, f"--data {str(root)!r}")
    return TensorImages(x, y, spec=spec, split=chosen, files=files, root=root, num_classes=num_classes,
                        classes=classes, **kwargs)
