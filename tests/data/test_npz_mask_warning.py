"""A uint8 .npz holding only 0 and 1 (a mask saved as uint8) is read as 0-255, as documented, with one warning
line; real uint8 images and masks stored as 0/255 load without one."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from edgewise import data


def write(path: Path, x: np.ndarray, *, compressed: bool = False) -> str:
    (np.savez_compressed if compressed else np.savez)(path, x=x, y=np.zeros(len(x), np.int64))
    return str(path)


@pytest.mark.parametrize("compressed", [False, True])
def test_uint8_zero_one_array_warns_and_reads_as_0_255(tmp_path: Path, compressed: bool) -> None:
    masks = np.random.default_rng(0).integers(0, 2, size=(3, 4, 5), dtype=np.uint8)
    with pytest.warns(UserWarning, match="uint8 x holds only 0 and 1") as caught:
        dataset = data.load(write(tmp_path / "m.npz", masks, compressed=compressed))
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the data.load line, not inside edgewise
    assert torch.equal(dataset[2][0], torch.from_numpy(masks[2]).float().unsqueeze(0) / 255)


@pytest.mark.parametrize("largest", [2, 255])
def test_uint8_images_with_larger_values_load_silently(tmp_path: Path, largest: int) -> None:
    x = np.zeros((3, 4, 5), np.uint8)
    x[2, 3, 4] = largest  # in the last image only: the whole array is looked at, not the first image
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.load(write(tmp_path / "x.npz", x))
