"""Training images: an image folder or the Fashion-MNIST idx files, as ``[N, 3, size, size]`` in [-1, 1].

Fashion-MNIST's 28x28 gray images are resized bilinearly to ``size`` and the gray channel replicated to
RGB (the built-in model's preprocessing, :func:`fashion_mnist_to_rgb`). Folder images are centre-cropped
to a square and resized with PIL's bicubic filter, as ``psld evaluate`` prepares its ground truth
(:func:`psld.evaluation.datasets.load_image`).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FASHION_MNIST_DIR",
    "ImageSource",
    "fashion_mnist_to_rgb",
    "read_idx_images",
    "resolve_source",
]

#: where Debian's ``dataset-fashion-mnist`` package installs the idx files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_NAMES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """The ``uint8 [N, H, W]`` array of an idx3 file (gzip or plain); ``ValueError`` if it is not one."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 16 or int.from_bytes(raw[:4], "big") != 0x00000803:
        raise ValueError(f"{str(path)!r} is not an idx3 image file")
    n, h, w = (int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in (1, 2, 3))
    if len(raw) != 16 + n * h * w:
        raise ValueError(f"{str(path)!r} is truncated ({len(raw) - 16} bytes for {n}x{h}x{w})")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)


def fashion_mnist_to_rgb(images: np.ndarray | Tensor, size: int) -> Tensor:
    """``uint8 [N, 28, 28]`` -> ``float32 [N, 3, size, size]`` in [-1, 1]: bilinear resize, gray to RGB."""
    x = torch.from_numpy(np.array(images, dtype=np.uint8)).float()[:, None] / 255.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 2 - 1).repeat(1, 3, 1, 1)


def _find_idx(folder: Path, split: str) -> Path | None:
    name = _IDX_NAMES[0] if split == "train" else _IDX_NAMES[1]
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


class ImageSource:
    """A training set: ``len()``, ``load(start, stop) -> [n, 3, size, size]`` in [-1, 1], ``identity``."""

    def __init__(self, kind: str, path: Path, size: int, files: list[Path] | None = None):
        self.kind, self.path, self.size = kind, path, size
        self._files = files or []
        self._idx: np.ndarray | None = None
        if kind == "idx":
            self._idx = read_idx_images(path)

    def __len__(self) -> int:
        return len(self._idx) if self._idx is not None else len(self._files)

    @property
    def identity(self) -> str:
        """What the latent cache is keyed on: the source, its size and its file list."""
        stat = self.path.stat()
        names = ",".join(f.name for f in self._files)
        return f"{self.kind}:{self.path.resolve()}:{stat.st_size}:{len(self)}:{self.size}:{names}"

    def load(self, start: int, stop: int) -> Tensor:
        if self._idx is not None:
            return fashion_mnist_to_rgb(self._idx[start:stop], self.size)
        from psld.evaluation.datasets import ImageSource as ImageFile
        from psld.evaluation.datasets import load_image

        arrays = [load_image(ImageFile(f.stem, str(f)), self.size) for f in self._files[start:stop]]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def resolve_source(data: str | os.PathLike, size: int) -> ImageSource:
    """``"fashion-mnist"`` (the system package), an idx file, a folder holding Fashion-MNIST's idx files,
    or a folder of images. ``ValueError`` (one line) when none of these is found."""
    text = os.fspath(data)
    path = Path(FASHION_MNIST_DIR if text == "fashion-mnist" else text)
    if not path.exists():
        hint = " (install it: apt-get install dataset-fashion-mnist)" if text == "fashion-mnist" else ""
        raise ValueError(f"training data {text!r} does not exist{hint}")
    if path.is_file():
        return ImageSource("idx", path, size)
    idx = _find_idx(path, "train")
    if idx is not None:
        return ImageSource("idx", idx, size)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_EXT and p.is_file())
    if not files:
        raise ValueError(
            f"training data folder {text!r} holds no images ({', '.join(_IMAGE_EXT)}) and no idx files"
        )
    return ImageSource("folder", path, size, files)
