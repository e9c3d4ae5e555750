"""Random motion-blur kernels with the distribution of the official generator (the ``motionblur`` package).

The official DPS/PSLD code draws its motion kernel from the ``motionblur`` package (``Kernel(size=(K, K),
intensity=0.5).kernelMatrix``), with numpy's global random state. :func:`random_walk_motion_kernel` follows
that package's algorithm and parameters, with ``psld``'s own explicit ``torch.Generator``, so its kernels
have the same distribution; the same seed does **not** give the official code's kernel (different random
streams, and numpy's samplers are not reproduced draw for draw). With ``I`` the intensity, ``K`` the size,
``N = 2K`` the super-sampled canvas and ``diag = sqrt(2) N``:

1. Path length ``Lmax = 0.75 diag (U(0, 1) + U(0, I^2))``; step lengths ``Beta(1, 30) (1 - I + 0.1) diag``,
   drawn until their sum reaches ``Lmax`` (candidates longer than ``Lmax`` are rejected).
2. Headings: ``amax = U(0, I pi)``, a sign-flip probability ``Beta(2, 20)``; the first heading is
   ``U(-amax, amax)``, every further one has magnitude ``Triangular(0, I amax, amax + 0.1)`` and the sign of
   the previous heading, flipped with that probability.
3. The polyline through the cumulative sums of ``step * exp(i heading)`` is centred on the mean of its
   vertices, rotated by ``U(0, pi)`` and moved to the centre of the ``N x N`` canvas.
4. It is drawn in white with width ``int(diag / 150)`` (at least 1: the Pillow of the official environment
   drew width-0 lines one pixel wide, current Pillow draws nothing), blurred with a Gaussian of radius
   ``int(0.01 diag)``, resized to ``K x K`` (Lanczos), converted to 8-bit grey and normalised to sum 1
   (Pillow does the rasterising, as in the package).

The official operator applies the kernel by correlation (``conv2d``); :class:`psld.operators.MotionBlur`
does the same by default.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from psld.operators.base import as_generator

#: the package's constant added to the step scale and the heading range
_EPS = 0.1


def motion_intensity(intensity) -> float:
    """``intensity`` as a float in [0, 1] (both motion-kernel generators), or a one-line ``ValueError``."""
    try:
        intensity = float(intensity)
    except (TypeError, ValueError):
        raise ValueError(f"intensity must be a number in [0, 1], got {intensity!r}") from None
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"intensity must lie in [0, 1], got {intensity!r}")
    return intensity


def _uniform(g: torch.Generator, n: int = 1, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _beta_1_b(g: torch.Generator, n: int, b: int) -> Tensor:
    """``Beta(1, b)`` by inversion: ``1 - U^(1/b)``."""
    return 1.0 - _uniform(g, n) ** (1.0 / b)


def _beta_2_20(g: torch.Generator) -> float:
    """``Beta(2, 20)``: the 2nd smallest of 21 uniforms."""
    return float(_uniform(g, 21).kthvalue(2).values)


def _triangular(g: torch.Generator, n: int, left: float, mode: float, right: float) -> Tensor:
    """``Triangular(left, mode, right)`` by inversion of its CDF."""
    u = _uniform(g, n)
    width = right - left
    cut = (mode - left) / width
    low = left + torch.sqrt(u * width * (mode - left))
    high = right - torch.sqrt((1 - u) * width * (right - mode))
    return torch.where(u < cut, low, high)


def _steps(g: torch.Generator, intensity: float, diag: float) -> Tensor:
    """Step lengths: accepted ``Beta(1, 30)`` draws (shorter than the path length) until the length."""
    max_len = 0.75 * diag * float(_uniform(g) + _uniform(g, 1, 0.0, intensity**2))
    scale = (1 - intensity + _EPS) * diag
    kept: list[Tensor] = []
    total = 0.0
    while True:
        cand = _beta_1_b(g, 256, 30) * scale
        cand = cand[cand < max_len]
        if cand.numel() == 0:
            continue
        csum = total + cand.cumsum(0)
        done = (csum >= max_len).nonzero()
        if done.numel():
            kept.append(cand[: int(done[0]) + 1])
            return torch.cat(kept)
        kept.append(cand)
        total = float(csum[-1])


def _headings(g: torch.Generator, intensity: float, n: int) -> Tensor:
    """Per-step headings: a sign Markov chain times triangular magnitudes."""
    max_angle = float(_uniform(g, 1, 0.0, intensity * math.pi))
    jitter = _beta_2_20(g)
    first = _uniform(g, 1, -max_angle, max_angle)
    if n == 1:
        return first
    mag = _triangular(g, n - 1, 0.0, intensity * max_angle, max_angle + _EPS)
    flips = torch.where(_uniform(g, n - 1) < jitter, -1.0, 1.0).to(torch.float64)
    signs = torch.sign(first) * flips.cumprod(0)
    return torch.cat([first, mag * signs])


def random_walk_motion_kernel(
    kernel_size: int, intensity: float = 0.5, seed: int | torch.Generator | None = 0
) -> Tensor:
    """A ``[kernel_size, kernel_size]`` float64 motion kernel (non-negative, sums to 1), drawn as above.

    ``intensity`` in [0, 1]: 0 gives a straight streak, 1 long curved paths (official setting 0.5).
    """
    from PIL import Image, ImageDraw, ImageFilter

    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    intensity = motion_intensity(intensity)
    g = as_generator(seed)
    canvas = 2 * kernel_size
    diag = math.sqrt(2.0) * canvas
    steps = _steps(g, intensity, diag)
    angles = _headings(g, intensity, steps.numel())
    path = torch.stack([steps * torch.cos(angles), steps * torch.sin(angles)], 1).cumsum(0)
    path = path - path.mean(0)
    rot = float(_uniform(g, 1, 0.0, math.pi))
    cr, sr = math.cos(rot), math.sin(rot)
    path = torch.stack([cr * path[:, 0] - sr * path[:, 1], sr * path[:, 0] + cr * path[:, 1]], 1)
    path = path + canvas / 2
    img = Image.new("RGB", (canvas, canvas))
    ImageDraw.Draw(img).line([tuple(p) for p in path.tolist()], width=max(1, int(diag / 150)))
    img = img.filter(ImageFilter.GaussianBlur(radius=int(diag * 0.01)))
    img = img.resize((kernel_size, kernel_size), resample=Image.Resampling.LANCZOS).convert("L")
    k = torch.from_numpy(np.asarray(img, dtype=np.float64).copy())
    if float(k.sum()) <= 0:  # only for a tiny kernel whose path fades below 8 bits: the identity blur
        k[kernel_size // 2, kernel_size // 2] = 1.0
    return k / k.sum()
