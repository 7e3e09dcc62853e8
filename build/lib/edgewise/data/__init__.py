"""Datasets: one data spec (``load``) for the shipped sample, Fashion-MNIST, ImageFolder, .npz, CIFAR and IDX."""

from edgewise.data.dataset import ImageDataset
from edgewise.data.fashion_mnist import CLASSES, fashion_mnist, sample, sample_indices
from edgewise.data.idx import DataFileError, read_idx
from edgewise.data.loader import check_compatible, load, select, stack

__all__ = [
    "CLASSES",
    "DataFileError",
    "ImageDataset",
    "check_compatible",
    "fashion_mnist",
    "load",
    "read_idx",
    "sample",
    "sample_indices",
    "select",
    "stack",
]
