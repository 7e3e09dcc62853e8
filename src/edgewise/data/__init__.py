"""Datasets: Fashion-MNIST from IDX files and the sample shipped inside the package."""

from edgewise.data.fashion_mnist import CLASSES, fashion_mnist, sample, sample_indices
from edgewise.data.idx import DataFileError, read_idx

__all__ = ["CLASSES", "DataFileError", "fashion_mnist", "read_idx", "sample", "sample_indices"]
