"""One data spec for the library and every command, sample selection, and the checks of a model against data.

Specs: ``sample`` (the shipped 1,000 Fashion-MNIST test images), ``fmnist-test`` (the 10,000 of Debian's
``dataset-fashion-mnist``), a folder in ImageFolder layout, an ``.npz``, a folder of CIFAR-10/100 python
batches, a folder of MNIST-style IDX files (``train-``/``t10k-images-idx3-ubyte[.gz]`` and ``-labels-idx1-``, or
Kaggle's ``t10k-images.idx3-ubyte``).
Errors name the argument by its command-line name (``--data``, ``--split``, ``--n``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgewise.data.cifar import flavour, load_cifar
from edgewise.data.dataset import ImageDataset, Size, TensorImages, check_labels
from edgewise.data.fashion_mnist import CLASSES, find_root
from edgewise.data.folder import ImageFolder
from edgewise.data.idx import DataFileError, read_idx
from edgewise.data.npz import NpzImages
from edgewise.models.wrappers import Normalize

IDX_PREFIXES = {"train": "train", "test": "t10k"}


def _idx_files(root: Path, split: str) -> tuple[Path, Path] | None:
    """The split's image and label files: ``t10k-images-idx3-ubyte[.gz]`` as LeCun's site names them, or
    ``t10k-images.idx3-ubyte`` as Kaggle's copies do."""
    prefix = IDX_PREFIXES[split]
    for separator in ("-", "."):
        for suffix in (".gz", ""):
            images = root / f"{prefix}-images{separator}idx3-ubyte{suffix}"
            labels = root / f"{prefix}-labels{separator}idx1-ubyte{suffix}"
            if images.is_file() and labels.is_file():
                return images, labels
    return None


def load_idx(root: Path, *, spec: str, split: str | None, classes: Sequence[str] | None = None,
             resize: Size | None = None, center_crop: Size | None = None) -> TensorImages:
    """The IDX folder ``root``'s ``split`` (default ``test``: the ``t10k-`` files) as uint8 images in memory."""
    chosen = "test" if split is None else split
    if chosen not in IDX_PREFIXES:
        raise ValueError(f"--split must be one of {sorted(IDX_PREFIXES)} for an IDX folder, got {split!r}")
    found = _idx_files(root, chosen)
    if found is None:
        prefix = IDX_PREFIXES[chosen]
        raise DataFileError(f"--data {str(root)!r} lacks {prefix}-images-idx3-ubyte[.gz] and "
                            f"{prefix}-labels-idx1-ubyte[.gz] (or {prefix}-images.idx3-ubyte and "
                            f"{prefix}-labels.idx1-ubyte) (split {chosen!r})")
    images, labels = read_idx(found[0], ndim=3), read_idx(found[1], ndim=1).long()
    num_classes = check_labels(labels, len(images), classes, f"--data {str(root)!r}")
    return TensorImages(images.unsqueeze(1), labels, spec=spec, split=chosen, files=list(found), root=root,
                        num_classes=num_classes, classes=classes, resize=resize, center_crop=center_crop)


def _no_split(spec: str, split: str | None) -> None:
    if split is not None:
        raise ValueError(f"--split applies to CIFAR and IDX folders, not to --data {spec!r}")


def load(spec: str | Path, *, split: str | None = None, resize: Size | None = None,
         center_crop: Size | None = None) -> ImageDataset:
    """The data ``spec`` as a map-style dataset, ``ds[i] -> (float C×H×W image in [0, 1], int label)``.

    ``split`` (``train``/``test``, default ``test``) chooses the files of a CIFAR or IDX folder. ``resize``
    (int: the shorter side; or (height, width)) and ``center_crop`` (int or (height, width)) apply per item.
    Dataset index i is the i-th image in the spec's fixed order: the files' order for IDX, CIFAR (batches in
    numeric order) and ``.npz``; sorted class folders, then sorted paths, for an ImageFolder.
    """
    if not isinstance(spec, (str, Path)) or not str(spec):
        raise TypeError(f"--data must be a non-empty string or path, got {spec!r}")
    text = str(spec)
    if text == "sample":
        _no_split(text, split)
        files = resources.files("edgewise.data") / "files"
        with resources.as_file(files / "sample-images-idx3-ubyte.gz") as images, resources.as_file(
                files / "sample-labels-idx1-ubyte.gz") as labels:
            x, y = read_idx(images, ndim=3), read_idx(labels, ndim=1)
            return TensorImages(x.unsqueeze(1), y, spec=text, split=None, files=[images, labels],
                                root=images.parent, num_classes=len(CLASSES), classes=CLASSES, resize=resize,
                                center_crop=center_crop)
    if text == "fmnist-test":
        _no_split(text, split)
        return load_idx(find_root("test"), spec=text, split=None, classes=CLASSES, resize=resize,
                        center_crop=center_crop)
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(f"--data {text!r} is neither sample nor fmnist-test nor an existing folder or .npz file")
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"--data {text!r}: a data file must be an .npz with arrays x and y")
        _no_split(text, split)
        return NpzImages(path, spec=text, split=None, resize=resize, center_crop=center_crop)
    if flavour(path) is not None:
        return load_cifar(path, spec=text, split=split, resize=resize, center_crop=center_crop)
    if any(_idx_files(path, name) for name in IDX_PREFIXES):
        return load_idx(path, spec=text, split=split, resize=resize, center_crop=center_crop)
    _no_split(text, split)
    return ImageFolder(path, spec=text, split=None, resize=resize, center_crop=center_crop)


def select(dataset: Any, *, n: int | None = None, offset: int = 0,
           indices: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Dataset indices to evaluate: ``indices`` as given (distinct, in range), else ``n`` samples from
    ``offset`` on in dataset order (default: all from ``offset``). Returns a 1-D int64 tensor."""
    size = len(dataset)
    if indices is not None:
        if n is not None or offset != 0:
            raise ValueError("--indices cannot be combined with --n/--offset")
        chosen = torch.as_tensor(indices)
        if chosen.dim() != 1 or len(chosen) == 0 or chosen.is_floating_point() or chosen.dtype == torch.bool:
            raise ValueError(f"--indices must be a non-empty list of ints, got {indices!r}")
        chosen = chosen.long()
        if int(chosen.min()) < 0 or int(chosen.max()) >= size:
            raise ValueError(f"--indices must be in [0, {size - 1}] (the data has {size} samples), got min "
                             f"{int(chosen.min())} max {int(chosen.max())}")
        values, counts = chosen.unique(return_counts=True)
        if bool((counts > 1).any()):
            raise ValueError(f"--indices must be distinct, got {values[counts > 1][:10].tolist()} more than once")
        return chosen
    for name, value in (("--offset", offset), ("--n", n)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if not 0 <= offset < size:
        raise ValueError(f"--offset must be in [0, {size - 1}] (the data has {size} samples), got {offset}")
    count = size - offset if n is None else n
    if count < 1 or offset + count > size:
        raise ValueError(f"--n must be in [1, {size - offset}] (the data has {size} samples, --offset {offset}), "
                         f"got {n}")
    return torch.arange(offset, offset + count)


def stack(dataset: Any, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The items ``indices`` of a map-style dataset as one batch: (inputs B×C×H×W, int64 labels B)."""
    items = [dataset[int(i)] for i in indices]
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items], dtype=torch.long)


def _device(model: nn.Module) -> torch.device:
    tensor = next(iter([*model.parameters(), *model.buffers()]), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def check_compatible(model: nn.Module, dataset: Any, *, device: str | torch.device | None = None) -> int:
    """Check that ``model`` can evaluate ``dataset``; returns the model's number of outputs (classes).

    One forward on the first two samples: the model must take their channels and size, and return
    (batch, classes) logits with as many classes as the data has names (or more than its largest label when
    it has none). ``--mean``/``--std`` must have one value or one per channel of the data.
    """
    spec = getattr(dataset, "spec", "the data")
    inputs = stack(dataset, range(min(2, len(dataset))))[0]
    channels = inputs.shape[1]
    for module in model.modules():
        if isinstance(module, Normalize) and module.mean.numel() not in (1, channels):
            raise ValueError(f"--mean/--std have {module.mean.numel()} values, --data {spec!r} has {channels} "
                             "channel(s): give one value or one per channel")
    inputs = inputs.to(_device(model) if device is None else torch.device(device))
    try:
        with torch.no_grad():
            logits = model(inputs)
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--model cannot take --data {spec!r}'s inputs of shape {tuple(inputs.shape[1:])} "
                         f"({type(error).__name__}: {first[:300]}); check its input channels, or give "
                         "--resize/--center-crop") from error
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(inputs):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"--model must return logits of shape (batch, classes), got {got} for a batch of "
                         f"{len(inputs)}")
    outputs = int(logits.shape[1])
    classes = getattr(dataset, "classes", None)
    num_classes = int(getattr(dataset, "num_classes", outputs))
    if classes is not None and outputs != len(classes):
        raise ValueError(f"--model outputs {outputs} classes, --data {spec!r} has {len(classes)} "
                         f"({', '.join(map(str, classes[:5]))}{', ...' if len(classes) > 5 else ''}); give "
                         "--num-classes or data with the model's classes, in the model's order")
    if classes is None and outputs < num_classes:
        raise ValueError(f"--model outputs {outputs} classes, --data {spec!r} has labels up to {num_classes - 1}")
    return outputs
