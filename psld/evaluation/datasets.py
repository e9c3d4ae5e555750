"""Image sets for :func:`psld.evaluate`: the builtin photographs, a folder, a glob or a list of files.

``builtin`` is the sample photographs that ship inside the installed wheels: scikit-image's
astronaut, coffee, chelsea, rocket and camera (grayscale, repeated to RGB) and matplotlib's
grace_hopper. Nothing is downloaded.

**Resize policy.** Every image is centre-cropped to a square (side = its shorter side) and resized to
``size x size`` (PIL bicubic, antialiased when shrinking): ``resize="crop"``. ``resize="nearest-up"``
reproduces the official Stable Diffusion protocol (256 px data upsampled to 512 px by nearest
neighbour): centre crop, bicubic resize to ``size / 2``, then nearest-neighbour upsampling by 2.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np

__all__ = ["BUILTIN", "RESIZE_MODES", "ImageSource", "resolve_images", "check_images", "load_image"]

BUILTIN = ("astronaut", "coffee", "chelsea", "rocket", "camera", "grace_hopper")
RESIZE_MODES = ("crop", "nearest-up")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclass(frozen=True)
class ImageSource:
    """One image of the set: ``name`` (file stem, used in output paths) and where it comes from."""

    name: str
    path: str | None = None  # None for builtin images

    @property
    def origin(self) -> str:
        return self.path if self.path is not None else f"builtin:{self.name}"


def _files(spec: str) -> list[str]:
    if os.path.isdir(spec):
        files = sorted(
            str(p) for p in Path(spec).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(f"images: folder {spec!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if any(c in spec for c in "*?["):
        files = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
        if not files:
            raise ValueError(f"images: the pattern {spec!r} matches no files")
        return files
    if os.path.isfile(spec):
        return [spec]
    raise ValueError(f"images: {spec!r} is not 'builtin', a folder, a glob pattern or an image file")


def resolve_images(images: str | os.PathLike | list) -> list[ImageSource]:
    """The image set for ``images``: ``"builtin"``, ``"fashion-mnist-test"`` (the 32 held-out test images
    shipped with the built-in model), a folder (every image file, sorted), a glob pattern, one file, or a
    list of files. Names (file stems) must be unique."""
    if isinstance(images, (str, os.PathLike)) and os.fspath(images) == "builtin":
        return [ImageSource(n) for n in BUILTIN]
    if isinstance(images, (str, os.PathLike)) and os.fspath(images) == "fashion-mnist-test":
        from psld.models.builtin import test_images

        return [ImageSource(p.stem, str(p)) for p in test_images()]
    if isinstance(images, (str, os.PathLike)):
        paths = _files(os.fspath(images))
    elif isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images: the list is empty")
        paths = []
        for item in images:
            if not isinstance(item, (str, os.PathLike)):
                raise ValueError(f"images: list items must be file paths, got {type(item).__name__}")
            if not os.path.isfile(item):
                raise ValueError(f"images: file {os.fspath(item)!r} does not exist")
            paths.append(os.fspath(item))
    else:
        raise ValueError(
            f"images must be 'builtin', a folder, a glob or a list of files, got {type(images).__name__}"
        )
    sources = [ImageSource(Path(p).stem, p) for p in paths]
    seen: dict[str, str | None] = {}
    for s in sources:
        if s.name in seen:
            raise ValueError(f"images: {seen[s.name]!r} and {s.path!r} have the same name {s.name!r}")
        seen[s.name] = s.path
    return sources


def _open(source: ImageSource):
    from PIL import Image, UnidentifiedImageError

    if source.path is None:
        if source.name == "grace_hopper":
            import matplotlib.cbook

            sample = matplotlib.cbook.get_sample_data("grace_hopper.jpg")  # an open binary file
            with Image.open(cast("IO[bytes]", sample)) as im:
                return im.convert("RGB")
        import skimage.data

        return Image.fromarray(getattr(skimage.data, source.name)()).convert("RGB")
    try:
        with Image.open(source.path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ValueError(f"images: {source.path!r} is not an image PIL can read") from None


def check_images(sources: list[ImageSource]) -> None:
    """Open every image once (before any model loads); ``ValueError`` naming the first unreadable one."""
    for s in sources:
        _open(s)


def load_image(source: ImageSource, size: int, resize: str = "crop") -> np.ndarray:
    """The ground truth: ``uint8`` ``[size, size, 3]`` after the resize policy of the module docstring."""
    from PIL import Image

    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    im = _open(source)
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if resize == "crop":
        im = im.resize((size, size), Image.Resampling.BICUBIC)
    else:
        im = im.resize((size // 2, size // 2), Image.Resampling.BICUBIC).resize(
            (size, size), Image.Resampling.NEAREST
        )
    return np.asarray(im, dtype=np.uint8).copy()
