import gzip
import json
import struct
from pathlib import Path

import pytest
import torch

from edgewise.data import CLASSES, DataFileError, fashion_mnist, read_idx, sample, sample_indices
from edgewise.data.fashion_mnist import DEBIAN_ROOT
from edgewise.data.idx import write_idx


def _write_split(folder: Path, images: torch.Tensor, labels: torch.Tensor, split: str = "test") -> None:
    prefix = "t10k" if split == "test" else "train"
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


def test_sample_is_100_per_class_in_unit_range() -> None:
    inputs, labels = sample()
    assert inputs.shape == (1000, 1, 28, 28) and inputs.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.equal(labels.bincount(), torch.full((10,), 100))
    assert float(inputs.min()) == 0.0 and float(inputs.max()) == 1.0
    assert len(CLASSES) == 10


def test_sample_indices_follow_the_recorded_rule() -> None:
    indices = sample_indices()
    assert len(indices) == 1000 and indices == sorted(indices) and len(set(indices)) == 1000


@pytest.mark.skipif(not (DEBIAN_ROOT / "t10k-images-idx3-ubyte.gz").is_file(), reason="needs dataset-fashion-mnist")
def test_sample_equals_the_test_set_at_its_indices() -> None:
    test_inputs, test_labels = fashion_mnist("test")
    inputs, labels = sample()
    index = torch.tensor(sample_indices())
    assert torch.equal(test_inputs[index], inputs) and torch.equal(test_labels[index], labels)
    # the rule: the first 100 of each class in test order
    for c in range(10):
        assert torch.equal(index[labels == c], torch.nonzero(test_labels == c).flatten()[:100])


def test_idx_round_trip(tmp_path: Path) -> None:
    array = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    write_idx(tmp_path / "a.gz", array)
    assert torch.equal(read_idx(tmp_path / "a.gz", ndim=3), array)


def test_reads_a_root_with_the_full_test_split(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (10_000, 28, 28), dtype=torch.uint8)
    labels = torch.arange(10_000, dtype=torch.uint8) % 10
    _write_split(tmp_path, images, labels)
    inputs, targets = fashion_mnist("test", root=tmp_path)
    assert torch.equal(inputs, images.unsqueeze(1).float() / 255) and torch.equal(targets, labels.long())


def test_missing_file_names_the_file_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist"):
        fashion_mnist("test", root=tmp_path)


def test_wrong_count_is_an_error(tmp_path: Path) -> None:
    _write_split(tmp_path, torch.zeros(5, 28, 28, dtype=torch.uint8), torch.zeros(5, dtype=torch.uint8))
    with pytest.raises(DataFileError, match=r"expected \(10000, 28, 28\)"):
        fashion_mnist("test", root=tmp_path)


def test_bad_magic_number_and_truncation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(struct.pack(">HBB", 0, 0x0D, 3) + bytes(12)))
    with pytest.raises(DataFileError, match="magic number"):
        read_idx(bad, ndim=3)
    truncated = tmp_path / "short.gz"
    truncated.write_bytes(gzip.compress(struct.pack(">HBBIII", 0, 8, 3, 2, 28, 28) + bytes(100)))
    with pytest.raises(DataFileError, match="expected 1584"):
        read_idx(truncated, ndim=3)
    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(b"this is not gzip")
    with pytest.raises(DataFileError, match="not a readable gzip"):
        read_idx(not_gzip, ndim=3)


def test_bad_split() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        fashion_mnist("validation")


def test_indices_file_records_the_rule() -> None:
    from importlib import resources

    meta = json.loads((resources.files("edgewise.data") / "files" / "sample-indices.json").read_text())
    assert "first 100" in meta["rule"]
