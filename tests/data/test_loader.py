"""Data specs: every format written from the shipped sample loads the same tensors, every model source on every
data source gives per-sample attack results identical to the same model and tensors passed to run_attack, and a
table of bad specs each raises one clear error."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from edgewise import data, models
from edgewise.attacks import ddn
from edgewise.data.fashion_mnist import CLASSES
from edgewise.data.idx import DataFileError, write_idx
from edgewise.eval import run_attack

MODEL_PY = """
from torch import nn


class Net(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(width * 16, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def build(**kwargs):
    return Net(**kwargs)
"""

PER_CLASS = 2  # images of each class taken from the sample, sorted by class: the ImageFolder order too
ATTACKED = 6   # samples attacked per model x data pair


@pytest.fixture(scope="module")
def subset() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sample indices, uint8 images N×28×28, labels) of the first PER_CLASS images of each class, by class."""
    x, y = data.sample()
    chosen = torch.cat([torch.nonzero(y == c).flatten()[:PER_CLASS] for c in range(10)])
    return chosen, (x[chosen, 0] * 255).round().to(torch.uint8), y[chosen]


def cifar_images(gray: torch.Tensor) -> torch.Tensor:
    """The 28×28 gray images as 3×32×32 uint8 (channels repeated, 2 black pixels of padding)."""
    return nn.functional.pad(gray.unsqueeze(1).expand(-1, 3, -1, -1), (2, 2, 2, 2))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, subset) -> dict[str, tuple[str, torch.Tensor]]:
    """Data spec -> (spec, the float tensors it must load) for every format the tests write."""
    _, gray, labels = subset
    root = tmp_path_factory.mktemp("data")
    floats = gray.float().div(255).unsqueeze(1)
    written: dict[str, tuple[str, torch.Tensor]] = {}
    folder = root / "folder"
    for i, (image, label) in enumerate(zip(gray, labels, strict=True)):
        (folder / f"c{int(label)}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy(), mode="L").save(folder / f"c{int(label)}" / f"{i:03d}.png")
    written["folder"] = (str(folder), floats)
    y = labels.numpy()
    for layout, array in (("nchw", floats), ("nhwc", floats.permute(0, 2, 3, 1))):
        np.savez(root / f"{layout}-uint8.npz", x=(array * 255).round().to(torch.uint8).numpy(), y=y)
        np.savez(root / f"{layout}-float.npz", x=array.contiguous().numpy(), y=y)
        written[f"{layout}-uint8"] = (str(root / f"{layout}-uint8.npz"), floats)
        written[f"{layout}-float"] = (str(root / f"{layout}-float.npz"), floats)
    np.savez_compressed(root / "compressed.npz", x=gray.numpy(), y=y)
    written["npz-compressed"] = (str(root / "compressed.npz"), floats)
    cifar = root / "cifar"
    cifar.mkdir()
    color = cifar_images(gray)
    with open(cifar / "test_batch", "wb") as handle:
        pickle.dump({"data": color.reshape(len(color), -1).numpy(), "labels": y.tolist()}, handle)
    for i in range(5):
        with open(cifar / f"data_batch_{i + 1}", "wb") as handle:
            part = slice(4 * i, 4 * i + 4)
            pickle.dump({"data": color[part].reshape(4, -1).numpy(), "labels": y[part].tolist()}, handle)
    with open(cifar / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CLASSES)}, handle)
    written["cifar"] = (str(cifar), color.float().div(255))
    idx = root / "idx"
    idx.mkdir()
    write_idx(idx / "t10k-images-idx3-ubyte.gz", gray)
    write_idx(idx / "t10k-labels-idx1-ubyte.gz", labels.to(torch.uint8))
    written["idx"] = (str(idx), floats)
    kaggle = root / "idx-kaggle"  # the names of Kaggle's (Fashion-)MNIST copies: a dot before idx, no gzip
    kaggle.mkdir()
    for name in ("images-idx3", "labels-idx1"):
        raw = gzip.decompress((idx / f"t10k-{name}-ubyte.gz").read_bytes())
        (kaggle / f"t10k-{name.replace('-', '.')}-ubyte").write_bytes(raw)
    written["idx-kaggle"] = (str(kaggle), floats)
    return written


@pytest.mark.parametrize("name", ["folder", "nchw-uint8", "nhwc-uint8", "nchw-float", "nhwc-float",
                                  "npz-compressed", "cifar", "idx", "idx-kaggle"])
def test_each_format_loads_the_written_images(files, subset, name: str) -> None:
    spec, expected = files[name]
    dataset = data.load(spec)
    images, labels = data.stack(dataset, range(len(dataset)))
    assert images.dtype == torch.float32
    assert torch.equal(images, expected)
    assert torch.equal(labels, subset[2])
    assert dataset.shape == tuple(expected.shape[1:])
    assert dataset.num_classes == 10
    assert dataset.identity["spec"] == spec and len(dataset.identity["sha256"]) == 64


def test_sample_spec_is_the_shipped_sample() -> None:
    dataset = data.load("sample")
    x, y = data.sample()
    assert len(dataset) == len(x) and dataset.classes == list(CLASSES)
    assert torch.equal(torch.stack([dataset[i][0] for i in range(0, 1000, 97)]), x[::97])
    assert [dataset[i][1] for i in range(0, 1000, 97)] == y[::97].tolist()


def test_uncompressed_npz_is_read_per_image_not_whole(files) -> None:
    """x of np.savez is read at its offset inside the zip (the dataset keeps no array), a compressed one whole."""
    assert data.load(files["nchw-float"][0]).array is None
    assert data.load(files["npz-compressed"][0]).array is not None


def test_folder_order_is_sorted_classes_then_paths(tmp_path: Path) -> None:
    for name in ("b", "a", "c10", "c9"):
        (tmp_path / name).mkdir()
        for file in ("z.png", "a.png"):
            Image.fromarray(np.full((4, 4), len(name) * 40 + len(file), np.uint8), mode="L").save(
                tmp_path / name / file)
    dataset = data.load(str(tmp_path))
    assert dataset.classes == ["a", "b", "c10", "c9"]
    assert [str(p.relative_to(tmp_path)) for p in dataset.paths] == [
        "a/a.png", "a/z.png", "b/a.png", "b/z.png", "c10/a.png", "c10/z.png", "c9/a.png", "c9/z.png"]
    assert [dataset[i][1] for i in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_folder_reads_the_image_files_torchvision_reads(tmp_path: Path) -> None:
    """BMP, WebP, TIFF, PPM/PGM beside PNG/JPEG are images of the class too, as for torchvision's ImageFolder (they
    were skipped without a word: fewer samples, other indices than the user's)."""
    from torchvision.datasets import ImageFolder

    pixels = np.random.default_rng(0).integers(0, 256, (5, 6, 3), np.uint8)
    for i, suffix in enumerate((".png", ".bmp", ".webp", ".tif", ".TIFF", ".ppm")):
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(pixels, mode="RGB").save(tmp_path / f"c{i % 2}" / f"{i}{suffix}", lossless=True)
    (tmp_path / "c1" / "notes.txt").write_text("not an image")
    dataset, reference = data.load(str(tmp_path)), ImageFolder(str(tmp_path))
    assert [(str(path), label) for path, label in zip(dataset.paths, dataset.targets, strict=True)] == \
        reference.samples
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    assert all(torch.equal(dataset[i][0], expected) for i in range(len(dataset)))


def test_resize_and_center_crop_apply_per_item(files) -> None:
    dataset = data.load(files["folder"][0], resize=40, center_crop=32)
    image, _ = dataset[3]
    assert dataset.shape == (1, 32, 32) == tuple(image.shape)
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    cropped = data.load(files["folder"][0], center_crop=(20, 10))[0][0]
    assert torch.equal(cropped, files["folder"][1][0][:, 4:24, 9:19])


def _two_sizes(root: Path) -> str:
    """A folder of two RGB images, 5x6 and 5x8 (height x width): one aspect ratio each."""
    (root / "a").mkdir(parents=True)
    for width in (6, 8):
        Image.fromarray(np.full((5, width, 3), 9 * width, np.uint8), mode="RGB").save(root / "a" / f"{width}.png")
    return str(root)


@pytest.mark.parametrize("kwargs", [{}, {"resize": 5}])
def test_images_of_another_size_are_an_error_naming_the_file(tmp_path: Path, kwargs: dict) -> None:
    """--resize N sets the shorter side only: another aspect ratio still gives another size, which is one error
    naming the image (it was a RuntimeError of torch.stack in the first batch)."""
    dataset = data.load(_two_sizes(tmp_path), **kwargs)
    with pytest.raises(DataFileError, match=r"image '.*8.png' is 5x8 .*the first image 5x6.*--resize HEIGHT,WIDTH"
                       ) as raised:
        data.stack(dataset, [0, 1])
    assert "\n" not in str(raised.value)
    assert data.stack(data.load(_two_sizes(tmp_path / "hw"), resize=(4, 4)), [0, 1])[0].shape == (2, 3, 4, 4)
    assert data.stack(data.load(_two_sizes(tmp_path / "crop"), resize=5, center_crop=5), [0, 1])[0].shape == \
        (2, 3, 5, 5)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"center_crop": 30}, r"--center-crop 30 is larger than image '.*' \(28x28\)"),
    ({"resize": 20, "center_crop": (10, 24)}, r"--center-crop 10,24 is larger than .* \(20x20 after --resize\)"),
])
def test_center_crop_larger_than_the_image_is_refused(files, kwargs: dict, match: str) -> None:
    """torchvision's center_crop pads a smaller image with zeros: black borders the user never asked for."""
    with pytest.raises(DataFileError, match=match) as raised:
        data.load(files["folder"][0], **kwargs)
    assert "\n" not in str(raised.value)
    with pytest.raises(DataFileError, match=r"--center-crop 30 is larger than image 0 of --data .* \(28x28\)"):
        data.load(files["nchw-uint8"][0], center_crop=30)


def test_npz_class_names_saved_as_bytes_are_text(tmp_path: Path, files) -> None:
    """np.array of bytes (dtype S, as from h5py or a Python 2 pipeline) holds the names, not "b'cat'"."""
    x, y = np.load(files["nchw-uint8"][0])["x"], np.load(files["nchw-uint8"][0])["y"]
    names = [f"class{i}" for i in range(10)]
    np.savez(tmp_path / "b.npz", x=x, y=y, classes=np.array([name.encode() for name in names]))
    assert data.load(str(tmp_path / "b.npz")).classes == names


def test_cifar_splits(files) -> None:
    spec, expected = files["cifar"]
    train = data.load(spec, split="train")
    # data_batch_1..5 in numeric order
    assert len(train) == 20 and torch.equal(data.stack(train, range(len(train)))[0], expected)
    assert data.load(spec).split == "test"


def test_select_order_and_ranges() -> None:
    dataset = data.load("sample")
    assert data.select(dataset, n=3, offset=10).tolist() == [10, 11, 12]
    assert len(data.select(dataset)) == 1000 and data.select(dataset, offset=998).tolist() == [998, 999]
    assert data.select(dataset, indices=[5, 2, 9]).tolist() == [5, 2, 9]
    for kwargs, match in (({"n": 1001}, "--n"), ({"n": 0}, "--n"), ({"n": 10, "offset": 995}, "--n"),
                          ({"offset": 1000}, "--offset"), ({"indices": [3, 1000]}, "--indices"),
                          ({"indices": [3, 1, 3]}, r"^--indices must be distinct, got \[3\] more than once$"),
                          ({"indices": [1], "n": 2}, "--indices"), ({"indices": []}, "--indices")):
        with pytest.raises(ValueError, match=match):
            data.select(dataset, **kwargs)


# ---- every model source x every data source == run_attack on the same model and tensors ----------------------


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, tuple[str, dict, nn.Module]]]:
    """channels -> model source -> (spec, load() keywords, the reference module it must equal)."""
    root = tmp_path_factory.mktemp("models")
    (root / "net.py").write_text(MODEL_PY)
    # The reference: the same file imported by the test itself (TorchScript needs the source on disk).
    spec = importlib.util.spec_from_file_location("loader_test_net", root / "net.py")
    assert spec is not None and spec.loader is not None
    namespace = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(namespace)
    sources: dict[int, dict[str, tuple[str, dict, nn.Module]]] = {}
    for channels, size in ((1, 28), (3, 32)):
        torch.manual_seed(channels)
        reference = namespace.Net(in_channels=channels).eval()
        with torch.no_grad():  # non-trivial batch-norm statistics
            reference.features[1].running_mean.uniform_(-0.1, 0.1)
            reference.features[1].running_var.uniform_(0.5, 2)
        torch.save({"epoch": 3, "model_state_dict": reference.state_dict()}, root / f"net{channels}.pt")
        torch.jit.save(torch.jit.script(reference), root / f"net{channels}.ts")
        example = torch.rand(2, channels, size, size)
        program = torch.export.export(reference, (example,),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        torch.export.save(program, root / f"net{channels}.pt2")
        sources[channels] = {
            "python": (f"{root / 'net.py'}:build", {"weights": root / f"net{channels}.pt",
                                                   "model_args": f'{{"in_channels": {channels}}}'}, reference),
            "torchscript": (str(root / f"net{channels}.ts"), {}, reference),
            "export": (str(root / f"net{channels}.pt2"), {}, reference),
        }
    torch.manual_seed(0)
    resnet = models.load("torchvision:resnet18", num_classes=10)
    torch.save(resnet.state_dict(), root / "resnet18.pt")
    sources[3]["torchvision"] = ("torchvision:resnet18", {"num_classes": 10, "weights": root / "resnet18.pt"},
                                 resnet)
    sources[1]["zoo"] = ("smallcnn-fmnist", {}, models.load("smallcnn-fmnist"))
    return sources


def per_sample(result) -> dict[str, torch.Tensor]:
    return {"adversarial": result.adversarial, "success": result.success, "labels": result.labels,
            "indices": result.indices,
            "clean_prediction": result.clean_prediction, "forwards": result.forwards,
            **{f"distance-{k}": v for k, v in result.distances.items()}}


PAIRS = [(source, name) for name in ("folder", "nchw-uint8", "nhwc-float", "npz-compressed", "idx", "sample")
         for source in ("python", "torchscript", "export", "zoo")] + [
         (source, "cifar") for source in ("python", "torchscript", "export", "torchvision")] + [
         ("python", "nhwc-uint8"), ("python", "nchw-float")]


@pytest.mark.parametrize(("source", "name"), PAIRS)
def test_loaded_model_and_data_give_the_results_of_the_same_tensors(files, subset, model_files, single_thread,
                                                                    source: str, name: str) -> None:
    if name == "sample":
        spec, chosen = "sample", subset[0][:ATTACKED]
        expected_inputs, expected_labels = data.sample()[0][chosen], subset[2][:ATTACKED]
    else:
        spec, expected = files[name]
        chosen = torch.arange(ATTACKED)
        expected_inputs, expected_labels = expected[:ATTACKED], subset[2][:ATTACKED]
    dataset = data.load(spec)
    model_spec, kwargs, reference = model_files[expected_inputs.shape[1]][source]
    model = models.load(model_spec, **kwargs)
    assert not model.training
    assert data.check_compatible(model, dataset) == 10
    attack = functools.partial(ddn, steps=3)
    options = {"batch_size": 4, "progress": False, "checks": False, "distances": ("l2", "linf"),
               "keep_adversarial": True}
    got = run_attack(model, dataset, None, attack, indices=chosen, **options)  # streamed from the dataset
    want = run_attack(reference, expected_inputs, expected_labels, attack, indices=chosen, **options)
    for key, value in per_sample(want).items():
        assert torch.equal(per_sample(got)[key], value), key


# ---- bad data specs and model/data mismatches: one clear error each ------------------------------------------


def _truncate(path: Path, keep: float = 0.5) -> Path:
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])
    return path


def bad_data(tmp: Path, files, case: str) -> str:
    """Write the bad data of ``case`` under ``tmp``; returns its spec."""
    if case in files:
        return files[case][0]
    spec = Path(files["nchw-float"][0])
    x, y = np.load(spec)["x"], np.load(spec)["y"]
    if case == "missing":
        return str(tmp / "nothing-here")
    if case == "empty-folder":
        (tmp / "empty").mkdir()
        return str(tmp / "empty")
    if case == "empty-class":
        (tmp / "f" / "cat").mkdir(parents=True)
        return str(tmp / "f")
    if case == "truncated-png":
        (tmp / "f" / "cat").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(tmp / "f" / "cat" / "a.png")
        _truncate(tmp / "f" / "cat" / "a.png")
        return str(tmp / "f")
    if case == "truncated-npz":
        (tmp / "t.npz").write_bytes(spec.read_bytes())
        return str(_truncate(tmp / "t.npz", 0.9))
    if case == "not-zip":
        (tmp / "t.npz").write_text("hello")
        return str(tmp / "t.npz")
    if case == "no-y":
        np.savez(tmp / "t.npz", x=x)
    elif case == "float-range":
        np.savez(tmp / "t.npz", x=(x - 0.5) / 0.25, y=y)
    elif case == "negative-label":
        np.savez(tmp / "t.npz", x=x, y=y - 1)
    elif case == "label-past-classes":
        np.savez(tmp / "t.npz", x=x, y=y, classes=np.array(["a", "b"]))
    elif case == "bad-layout":
        np.savez(tmp / "t.npz", x=x.reshape(len(x), 7, 4, 28), y=y)
    elif case == "int-images":
        np.savez(tmp / "t.npz", x=(x * 255).astype(np.int32), y=y)
    elif case == "txt":
        (tmp / "t.txt").write_text("1 2 3")
        return str(tmp / "t.txt")
    elif case == "truncated-cifar":
        cifar = tmp / "c"
        cifar.mkdir()
        (cifar / "test_batch").write_bytes((Path(files["cifar"][0]) / "test_batch").read_bytes()[:999])
        return str(cifar)
    elif case == "pickle-with-code":
        cifar = tmp / "c"
        cifar.mkdir()
        (cifar / "test_batch").write_bytes(pickle.dumps(zipfile.ZipInfo("x")))
        return str(cifar)
    return str(tmp / "t.npz")


BAD_DATA = [
    ("missing", {}, ValueError, "neither sample nor fmnist-test"),
    ("empty-folder", {}, DataFileError, "is empty"),
    ("empty-class", {}, DataFileError, "holds no"),
    ("truncated-npz", {}, DataFileError, "truncated"),
    ("not-zip", {}, DataFileError, "not a readable .npz"),
    ("no-y", {}, DataFileError, "must hold arrays x and y"),
    ("float-range", {}, DataFileError, r"in \[0, 1\].*--mean/--std"),
    ("negative-label", {}, DataFileError, "labels must be in"),
    ("label-past-classes", {}, DataFileError, r"labels must be in \[0, 1\] \(2 classes\)"),
    ("bad-layout", {}, DataFileError, "N×C×H×W or N×H×W×C"),
    ("int-images", {}, DataFileError, "uint8"),
    ("txt", {}, ValueError, "must be an .npz"),
    ("truncated-cifar", {}, DataFileError, "not a readable CIFAR"),
    ("pickle-with-code", {}, DataFileError, "refusing to build"),
    ("nchw-uint8", {"split": "train"}, ValueError, "--split applies to CIFAR and IDX"),
    ("cifar", {"split": "validation"}, ValueError, r"--split must be one of \['test', 'train'\]"),
    ("folder", {"resize": 0}, ValueError, "--resize must be a positive int"),
    ("folder", {"center_crop": (3, 4, 5)}, ValueError, "--center-crop must be"),
]


@pytest.mark.parametrize(("case", "kwargs", "error", "match"), BAD_DATA)
def test_bad_data_specs_raise_one_clear_error(tmp_path: Path, files, case: str, kwargs: dict, error: type,
                                              match: str) -> None:
    spec = bad_data(tmp_path, files, case)
    with pytest.raises(error, match=match) as raised:
        data.load(spec, **kwargs)
    assert "\n" not in str(raised.value)


def test_truncated_image_is_an_error_when_read(tmp_path: Path, files) -> None:
    spec = bad_data(tmp_path, files, "truncated-png")
    with pytest.raises(DataFileError, match="not a readable image"):
        data.load(spec)


MISMATCHES = [
    ("torchvision:resnet18", {"num_classes": 10}, "nchw-uint8", r"cannot take --data .* shape \(1, 28, 28\)"),
    ("smallcnn-fmnist", {}, "cifar", r"cannot take --data .* shape \(3, 32, 32\)"),
    ("torchvision:resnet18", {}, "cifar", "outputs 1000 classes, --data .* has 10"),
    ("torchvision:resnet18", {"num_classes": 10, "mean": [0.5, 0.5], "std": [0.2, 0.2]}, "cifar",
     "--mean/--std have 2 values, --data .* has 3 channel"),
]


@pytest.mark.parametrize(("spec", "kwargs", "name", "match"), MISMATCHES)
def test_model_and_data_mismatches_raise_one_clear_error(files, spec: str, kwargs: dict, name: str,
                                                         match: str) -> None:
    model = models.load(spec, **kwargs)
    with pytest.raises(ValueError, match=match) as raised:
        data.check_compatible(model, data.load(files[name][0]))
    assert "\n" not in str(raised.value)


def test_model_with_fewer_outputs_than_labels(tmp_path: Path, files) -> None:
    """Without class names (an IDX folder), the model must output more classes than the largest label."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 5)).eval()
    with pytest.raises(ValueError, match=r"outputs 5 classes, --data .* has labels up to 9"):
        data.check_compatible(model, data.load(files["idx"][0]))
