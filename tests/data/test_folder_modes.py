"""ImageFolder bit depths and channels: 16-bit gray PNGs are scaled by 1/65535 (not clipped), what PIL cannot
read faithfully is refused in one line, alpha is dropped, and a folder mixing gray and colour is read
consistently (gray repeated to 3 channels) or refused (colour in a gray folder)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgewise import data
from edgewise.data.folder import read_image
from edgewise.data.idx import DataFileError

RNG = np.random.default_rng(0)


def gray16() -> np.ndarray:
    """A 4×5 16-bit gray image using the whole range, with values that are not multiples of 257."""
    values = RNG.integers(0, 65536, size=(4, 5), dtype=np.uint16)
    values[0, :2] = (0, 65535)
    return values


def save(root: Path, name: str, image: Image.Image) -> Path:
    """``image`` as ``root/c/NAME.png`` (one class folder, images sorted by name)."""
    path = root / "c" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG of ``pixels`` (H×W×C uint16, C 2: gray+alpha, 3: RGB, 4: RGBA), which PIL cannot write."""
    height, width, channels = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, {2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def test_16_bit_gray_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = gray16()
    save(tmp_path, "a", Image.fromarray(values))
    image, _ = data.load(str(tmp_path))[0]
    assert image.shape == (1, 4, 5)
    assert torch.allclose(image[0], torch.from_numpy(values.astype(np.float64) / 65535).float(), atol=1e-7)


def test_8_and_16_bit_gray_images_share_one_scale(tmp_path: Path) -> None:
    """The audit's repro: a 0-255 image stored as 16 bits (times 257) reads as the same image stored as 8 bits."""
    eight = RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)
    save(tmp_path, "a", Image.fromarray(eight))
    save(tmp_path, "b", Image.fromarray(eight.astype(np.uint16) * 257))
    dataset = data.load(str(tmp_path))
    assert torch.equal(dataset[0][0], dataset[1][0])
    assert torch.allclose(dataset[1][0][0], torch.from_numpy(eight / 255).float(), atol=1e-7)


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_every_16_bit_gray_mode_of_a_16_bit_png(tmp_path: Path, mode: str) -> None:
    """Older Pillows decode a 16-bit gray PNG as mode I, newer as I;16; big-endian I;16B reads the same."""
    values = gray16()
    path = save(tmp_path, "a", Image.fromarray(values))
    opened = Image.fromarray(values.astype(">u2")) if mode == "I;16B" else Image.open(path).convert(mode) \
        if mode == "I" else Image.open(path)
    assert opened.mode == mode
    image = read_image(path, opened, 1)
    assert image.dtype == torch.float32
    assert torch.allclose(image[0], torch.from_numpy(values.astype(np.float64) / 65535).float(), atol=1e-7)


def test_16_bit_gray_in_a_colour_folder_is_repeated(tmp_path: Path) -> None:
    values = gray16()
    save(tmp_path, "a", Image.fromarray(RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)))
    save(tmp_path, "b", Image.fromarray(values))
    image = data.load(str(tmp_path))[1][0]
    expected = torch.from_numpy(values.astype(np.float64) / 65535).float()
    assert image.shape == (3, 4, 5) and all(torch.allclose(channel, expected, atol=1e-7) for channel in image)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_and_gray_alpha_pngs_are_refused(tmp_path: Path, channels: int) -> None:
    """PIL decodes these to 8 bits per sample: refused rather than read with a lost byte."""
    write_png16(tmp_path / "c" / "a.png", RNG.integers(0, 65536, size=(4, 5, channels), dtype=np.uint16))
    with pytest.raises(DataFileError, match="16-bit colour or gray\\+alpha PNG") as raised:
        data.load(str(tmp_path))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(("array", "mode"), [(np.full((4, 5), 70000, np.int32), "I"),
                                             (np.full((4, 5), 0.5, np.float32), "F")])
def test_integer_and_float_images_of_unknown_range_are_refused(tmp_path: Path, array: np.ndarray,
                                                                mode: str) -> None:
    """A TIFF named .png (PIL reads by content): mode I (32-bit) or F has no known full scale."""
    path = tmp_path / "c" / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(array).save(path, format="TIFF")
    assert Image.open(path).mode == mode
    with pytest.raises(DataFileError, match=f"mode {mode} .*unknown range") as raised:
        data.load(str(tmp_path))
    assert "\n" not in str(raised.value)


def test_gray_alpha_first_image_gives_one_channel_alpha_dropped(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, size=(4, 5, 2), dtype=np.uint8)
    save(tmp_path, "a", Image.fromarray(pixels, mode="LA"))
    image = data.load(str(tmp_path))[0][0]
    assert image.shape == (1, 4, 5)
    assert torch.equal(image[0], torch.from_numpy(pixels[..., 0]).float() / 255)


def test_rgba_drops_alpha_without_compositing(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, size=(4, 5, 4), dtype=np.uint8)
    save(tmp_path, "a", Image.fromarray(pixels, mode="RGBA"))
    image = data.load(str(tmp_path))[0][0]
    assert torch.equal(image, torch.from_numpy(pixels[..., :3]).permute(2, 0, 1).float() / 255)


def test_palette_image_is_expanded_to_its_colours(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, size=(256, 3), dtype=np.uint8)
    picked = RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)
    image = Image.fromarray(picked, mode="P")
    image.putpalette(palette.flatten().tolist())
    save(tmp_path, "a", image)
    loaded = data.load(str(tmp_path))[0][0]
    assert torch.equal(loaded, torch.from_numpy(palette[picked]).permute(2, 0, 1).float() / 255)


def test_colour_image_in_a_gray_folder_is_refused(tmp_path: Path) -> None:
    save(tmp_path, "a", Image.fromarray(RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)))
    colour = RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    colour[0, 0] = (10, 200, 30)
    save(tmp_path, "b", Image.fromarray(colour))
    dataset = data.load(str(tmp_path))
    with pytest.raises(DataFileError, match=r"is colour .*first image is gray") as raised:
        dataset[1]
    assert "\n" not in str(raised.value)


def test_gray_stored_as_rgb_in_a_gray_folder_is_read_as_gray(tmp_path: Path) -> None:
    save(tmp_path, "a", Image.fromarray(RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)))
    gray = RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)
    save(tmp_path, "b", Image.fromarray(np.repeat(gray[..., None], 3, axis=2)))
    image = data.load(str(tmp_path))[1][0]
    assert torch.equal(image, torch.from_numpy(gray).float().unsqueeze(0) / 255)


def test_gray_image_in_a_colour_folder_is_repeated(tmp_path: Path) -> None:
    save(tmp_path, "a", Image.fromarray(RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)))
    gray = RNG.integers(0, 256, size=(4, 5, 2), dtype=np.uint8)
    save(tmp_path, "b", Image.fromarray(gray, mode="LA"))
    image = data.load(str(tmp_path))[1][0]
    assert torch.equal(image, torch.from_numpy(gray[..., 0]).float().expand(3, -1, -1) / 255)
