"""Image, mask and kernel inputs/outputs for :func:`psld.solve` and the ``psld`` command.

Images are returned as float32 tensors ``[B, 3, H, W]`` in [0, 1]; conversion to the core's [-1, 1]
happens in :mod:`psld.restore`. Accepted image inputs: a file path, a ``PIL.Image``, a numpy array
(``HWC``/``HW``, or ``NHWC`` for a batch; ``uint8`` in 0..255 or float in [0, 1]), a torch tensor in
[0, 1] (``CHW`` or ``NCHW``), or a list of any of these (a batch; all must have the same size).
Grayscale is repeated to 3 channels; an opaque alpha channel is dropped and a transparent pixel refused.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "load_images",
    "load_mask",
    "load_kernel",
    "require_observed",
    "pad_to_multiple",
    "to_output",
    "to_pil",
]

OUTPUT_TYPES = ("pil", "np", "pt")


def _open_image(path: str | os.PathLike, what: str):
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise ValueError(f"{what} file {str(p)!r} does not exist")
    if not p.is_file():
        raise ValueError(f"{what} {str(p)!r} is not a file")
    try:
        with Image.open(p) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ValueError(f"{what} file {str(p)!r} is not an image PIL can read") from None


def _channels_to_rgb(t: Tensor, what: str) -> Tensor:
    """``[N, C, H, W]`` with C in 1..4 -> ``[N, 3, H, W]``."""
    c = t.shape[1]
    if c == 1:
        return t.expand(-1, 3, -1, -1).contiguous()
    if c in (2, 4):  # gray + alpha, RGB + alpha: an opaque alpha carries nothing and is dropped
        _refuse_transparency(t[:, -1], what)
        return t[:, :1].expand(-1, 3, -1, -1).contiguous() if c == 2 else t[:, :3].contiguous()
    if c == 3:
        return t
    raise ValueError(f"{what} must have 1, 3 or 4 channels, got {c}")


def _refuse_transparency(alpha: Tensor, what: str) -> None:
    """``ValueError`` when an alpha channel (in [0, 1]) has a transparent pixel: dropping it would
    silently change the image (what shows through is not defined)."""
    if alpha.numel() and float(alpha.min()) < 1.0 - 1e-6:
        raise ValueError(
            f"{what} has transparent pixels (alpha down to {float(alpha.min()):.3g}); "
            "flatten it onto a background (or remove the alpha channel) first"
        )


def _pil_alpha(im) -> Tensor | None:
    """The alpha channel of a PIL image in [0, 1], or ``None`` when it has none."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return None
    return torch.from_numpy(np.asarray(im.getchannel("A"), dtype=np.float32) / 255.0)


def _check_range(t: Tensor, what: str) -> Tensor:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"{what} must have values in [0, 1] (got [{lo:.3g}, {hi:.3g}]); convert from [-1, 1] first"
        )
    return t.clamp(0, 1)


#: full scale of Pillow's single-channel integer modes (16-bit gray PNG/TIFF open as I;16*, or "I")
_INT_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}


def _pil_to_tensor(im, what: str = "image") -> Tensor:
    """``[1, C, H, W]`` in [0, 1], scaled by the image's true bit depth.

    8-bit modes are divided by 255; 16-bit grayscale (``I;16*``, and ``I`` holding 16-bit values) by
    65535; float images (``F``, e.g. float TIFF) must already lie in [0, 1]. Pillow decodes 16-bit
    colour PNGs to 8-bit RGB(A), so those are read at 8-bit precision (correctly scaled).
    """
    if im.mode in _INT_MODES:
        arr = np.asarray(im).astype(np.float64)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0 or hi > _INT_MODES[im.mode]:
            raise ValueError(
                f"{what} has {im.mode} values in [{lo:g}, {hi:g}]; expected 16-bit values in 0..65535"
            )
        return torch.from_numpy((arr / _INT_MODES[im.mode]).astype(np.float32))[None, None]
    if im.mode == "F":
        return _check_range(torch.from_numpy(np.asarray(im, dtype=np.float32).copy())[None, None], what)
    if im.mode not in ("RGB", "L"):
        alpha = _pil_alpha(im)
        if alpha is not None:
            _refuse_transparency(alpha, what)
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.float32) / 255.0  # type: ignore[assignment]
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


def _numpy_to_tensor(arr: np.ndarray, what: str) -> Tensor:
    if arr.dtype == np.uint8:
        t = torch.from_numpy(arr.astype(np.float32) / 255.0)
    elif arr.dtype == np.uint16:
        t = torch.from_numpy(arr.astype(np.float32) / 65535.0)
    elif arr.dtype == bool:
        t = torch.from_numpy(arr.astype(np.float32))
    elif np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(arr.astype(np.float32))
    else:
        raise ValueError(f"{what} numpy array must be uint8 or float, got dtype {arr.dtype}")
    if t.dim() == 2:
        t = t[None, None]
    elif t.dim() == 3:
        t = t.permute(2, 0, 1)[None]
    elif t.dim() == 4:
        t = t.permute(0, 3, 1, 2)
    else:
        raise ValueError(f"{what} numpy array must be HW, HWC or NHWC, got shape {list(arr.shape)}")
    return _check_range(t, what)


def _one_image(item: Any, what: str) -> Tensor:
    from PIL import Image

    if isinstance(item, (str, os.PathLike)):
        t = _pil_to_tensor(_open_image(item, what), what)
    elif isinstance(item, Image.Image):
        t = _pil_to_tensor(item, what)
    elif isinstance(item, np.ndarray):
        t = _numpy_to_tensor(item, what)
    elif isinstance(item, Tensor):
        t = item.detach().to("cpu", torch.float32)
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t[None]
        elif t.dim() != 4:
            raise ValueError(f"{what} tensor must be CHW or NCHW, got shape {list(item.shape)}")
        t = _check_range(t, what)
    else:
        raise ValueError(
            f"{what} must be a path, PIL image, numpy array or torch tensor (or a list), "
            f"got {type(item).__name__}"
        )
    if t.shape[-1] < 2 or t.shape[-2] < 2:
        raise ValueError(f"{what} is too small ({t.shape[-2]}x{t.shape[-1]}); at least 2x2 pixels are needed")
    return _channels_to_rgb(t, what)


def load_images(images: Any, what: str = "image") -> Tensor:
    """A batch ``[B, 3, H, W]`` float32 in [0, 1] from any accepted input (see the module docstring)."""
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    if not items:
        raise ValueError(f"{what} list is empty")
    batch = [_one_image(item, what) for item in items]
    sizes = {tuple(t.shape[-2:]) for t in batch}
    if len(sizes) > 1:
        raise ValueError(f"all {what}s of a batch must have the same size, got {sorted(sizes)}")
    return torch.cat(batch)


#: mask levels: at most this far from black (0) or white (1); anything between is refused as ambiguous
MASK_TOLERANCE = 0.1


def _mask_from_channels(m: Tensor) -> Tensor:
    """``[H, W, C]`` (C = 3 or 4, values in [0, 1]) -> ``[H, W]``, refusing colour and transparency."""
    if m.shape[-1] == 4:
        _refuse_transparency(m[..., 3], "mask")
        m = m[..., :3]
    spread = float((m.amax(-1) - m.amin(-1)).max()) if m.numel() else 0.0
    if spread > MASK_TOLERANCE:
        raise ValueError(
            "mask is coloured (its channels differ); save it black (0, missing) and white (255, observed)"
        )
    return m.mean(-1)


def _refuse_gray(m: Tensor) -> None:
    gray = (m > MASK_TOLERANCE) & (m < 1 - MASK_TOLERANCE)
    if bool(gray.any()):
        where = gray.nonzero()[0].tolist()
        raise ValueError(
            f"mask has gray pixels (e.g. {float(m[tuple(where)]):.3g} of full scale at {where}); use black "
            "(0, missing) and white (255 or 1, observed) only"
        )


def load_mask(mask: Any, size: tuple[int, int] | None = None) -> Tensor:
    """A binary mask ``[H, W]`` (or ``[N, H, W]`` for a list/batch), 1 = observed pixel.

    Values are read in [0, 1] (8-bit / 255, 16-bit / 65535, ``bool`` as 0/1); a mask must be black
    and white: a level within :data:`MASK_TOLERANCE` of 0 is missing, within it of 1 observed, and a
    gray level between (e.g. 128), a coloured mask or a transparent pixel is refused (``ValueError``)
    rather than guessed. ``size = (H, W)`` checks the mask against the image.
    """
    from PIL import Image

    items = list(mask) if isinstance(mask, (list, tuple)) else [mask]
    if not items:
        raise ValueError("mask list is empty")
    masks = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            item = _open_image(item, "mask")
        if isinstance(item, Image.Image):
            if item.mode in _INT_MODES or item.mode == "F":  # 16-bit or float gray: true bit depth
                m = _pil_to_tensor(item, "mask")[0, 0]
            elif item.mode == "L" or item.mode == "1":
                m = torch.from_numpy(np.asarray(item.convert("L"), dtype=np.float32) / 255.0)
            else:
                alpha = _pil_alpha(item)
                rgb = np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0
                m = torch.from_numpy(rgb)
                if alpha is not None:
                    m = torch.cat([m, alpha[..., None]], -1)
                m = _mask_from_channels(m)
        elif isinstance(item, (np.ndarray, Tensor)):
            m = torch.as_tensor(np.array(item) if isinstance(item, np.ndarray) else item.detach().cpu())
            if m.dtype == torch.uint8 and bool((m > 1).any()):
                m = m.to(torch.float32) / 255.0
            m = m.to(torch.float32)
            if m.dim() == 3 and m.shape[-1] in (1, 3, 4) and m.shape[0] not in (1, 3, 4):  # HWC
                m = m[..., 0] if m.shape[-1] == 1 else _mask_from_channels(m)
            elif m.dim() == 3 and m.shape[0] in (1, 3, 4):  # CHW
                m = m[0] if m.shape[0] == 1 else _mask_from_channels(m.movedim(0, -1))
            elif m.dim() == 4:
                m = m[:, 0] if m.shape[1] in (1, 3, 4) else m[..., 0]
            if m.dim() not in (2, 3):
                raise ValueError(f"mask must be HW (or a batch NHW), got shape {list(m.shape)}")
        else:
            raise ValueError(
                f"mask must be a path, PIL image, numpy array or tensor, got {type(item).__name__}"
            )
        if not bool(torch.isfinite(m).all()):
            raise ValueError("mask contains NaN or infinite values")
        _refuse_gray(m)
        masks.append((m > 0.5).to(torch.float32))
    out = masks[0] if len(masks) == 1 else torch.stack([m if m.dim() == 2 else m[0] for m in masks])
    if size is not None and tuple(out.shape[-2:]) != tuple(size):
        raise ValueError(
            f"mask size {out.shape[-2]}x{out.shape[-1]} does not match the image size "
            f"{size[0]}x{size[1]} (H x W)"
        )
    return out


def require_observed(mask: Tensor) -> Tensor:
    """``mask`` unchanged, or ``ValueError`` when it (or one mask of a batch) observes no pixel."""
    flat = mask.reshape(-1, *mask.shape[-2:]) if mask.dim() >= 2 else mask.reshape(1, -1)
    empty = [i for i in range(flat.shape[0]) if not bool((flat[i] > 0).any())]
    if empty:
        which = "the mask" if flat.shape[0] == 1 else f"mask {empty[0]} of the batch"
        raise ValueError(f"{which} observes no pixel (all zero); white/1 marks an observed pixel")
    return mask


def load_kernel(kernel: Any) -> Tensor:
    """A blur kernel (float64 ``[kh, kw]``, odd sizes) from a ``.npy`` file, an array or a tensor."""
    if isinstance(kernel, (str, os.PathLike)):
        p = Path(kernel)
        if not p.is_file():
            raise ValueError(f"kernel file {str(p)!r} does not exist")
        try:
            kernel = np.load(p, allow_pickle=False)
        except Exception:
            raise ValueError(f"kernel file {str(p)!r} is not a numpy .npy array") from None
    try:
        k = torch.as_tensor(np.asarray(kernel) if not isinstance(kernel, Tensor) else kernel.detach().cpu())
        k = k.to(torch.float64)
    except Exception:
        raise ValueError(f"kernel must be a 2-D array, got {type(kernel).__name__}") from None
    if k.dim() != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be a 2-D array with odd sizes, got shape {list(k.shape)}")
    if not bool(torch.isfinite(k).all()) or float(k.sum()) <= 0:
        raise ValueError("kernel must be finite with a positive sum")
    return k


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad the bottom and right of ``x`` ``[N, C, H, W]`` so ``H`` and ``W`` are multiples.

    Reflection is repeated when the padding exceeds the image (tiny inputs); a side of 1 pixel, which
    has nothing to reflect, is replicated instead.
    """
    h, w = x.shape[-2:]
    need_h = (-h) % multiple
    need_w = (-w) % multiple
    if (need_h and h == 1) or (need_w and w == 1):
        x = F.pad(x, (0, need_w if w == 1 else 0, 0, need_h if h == 1 else 0), mode="replicate")
        need_h = 0 if h == 1 else need_h
        need_w = 0 if w == 1 else need_w
    while need_h > 0 or need_w > 0:
        ph = min(need_h, x.shape[-2] - 1)
        pw = min(need_w, x.shape[-1] - 1)
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        need_h -= ph
        need_w -= pw
    return x


def lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def to_pil(images01: Tensor) -> list:
    """``[B, 3, H, W]`` in [0, 1] -> list of RGB ``PIL.Image``."""
    from PIL import Image

    arr = (images01.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def to_output(images01: Tensor, output_type: str):
    """Convert ``[B, 3, H, W]`` in [0, 1] to ``"pil"`` (list), ``"np"`` (NHWC float32) or ``"pt"`` (NCHW)."""
    images01 = images01.detach().float().clamp(0, 1).cpu()
    if output_type == "pil":
        return to_pil(images01)
    if output_type == "np":
        return images01.permute(0, 2, 3, 1).numpy()
    if output_type == "pt":
        return images01
    raise ValueError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}")
