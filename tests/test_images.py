"""Image files read at their true bit depth: 16-bit gray and colour PNG, float TIFF, 16-bit masks."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from psld.images import load_images, load_mask


def _write_png16(path, arr: np.ndarray) -> None:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour): gray, gray+alpha, RGB, RGBA."""
    arr = np.asarray(arr, dtype=">u2")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = b"".join(b"\x00" + arr[r].tobytes() for r in range(arr.shape[0]))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", arr.shape[1], arr.shape[0], 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _ramp(h=6, w=9) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * (65535 // (h * w - 1))).astype(np.uint16)


def test_16bit_gray_png_scaled_by_65535(tmp_path):
    a = _ramp()
    Image.fromarray(a).save(tmp_path / "g.png")  # Pillow writes I;16
    assert Image.open(tmp_path / "g.png").mode.startswith("I;16")
    t = load_images(tmp_path / "g.png")
    expected = torch.from_numpy(a.astype(np.float32) / 65535)
    assert t.shape == (1, 3, *a.shape)
    for c in range(3):
        assert torch.allclose(t[0, c], expected, atol=1e-6)
    _write_png16(tmp_path / "g2.png", a)  # the same through the hand-written encoder
    assert torch.allclose(load_images(tmp_path / "g2.png"), t, atol=1e-6)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png_correctly_scaled(tmp_path, channels):
    a = _ramp()
    rgb = np.stack([a, a // 2, 65535 - a, np.full_like(a, 65535)][:channels], -1)  # opaque alpha
    _write_png16(tmp_path / "c.png", rgb)
    t = load_images(tmp_path / "c.png")[0]
    expected = torch.from_numpy(rgb[..., :3].astype(np.float32) / 65535).permute(2, 0, 1)
    assert torch.allclose(t, expected, atol=1 / 255 + 1e-6)  # Pillow decodes 16-bit colour to 8 bits


def test_float_tiff_in_unit_range_and_out_of_range_refused(tmp_path):
    f = np.linspace(0, 1, 54, dtype=np.float32).reshape(6, 9)
    Image.fromarray(f).save(tmp_path / "f.tiff")
    t = load_images(tmp_path / "f.tiff")
    assert torch.allclose(t[0, 1], torch.from_numpy(f), atol=1e-7)
    Image.fromarray(f * 255).save(tmp_path / "f255.tiff")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_images(tmp_path / "f255.tiff")


def test_16bit_mask_thresholded_at_half_of_65535(tmp_path):
    m = np.zeros((6, 9), np.uint16)
    m[:, :4] = 65535
    m[:, 4] = 3000  # near black in 16 bits: not observed (convert("L") would clip it to white)
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", (6, 9))
    assert mask[:, :4].all() and not mask[:, 4:].any()
