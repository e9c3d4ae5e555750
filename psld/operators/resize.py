"""Super-resolution: downsampling by an integer factor, bicubic (antialiased) or by average pooling.

``"bicubic"`` follows the resizer the official code uses (DPS's ``Resizer``): the Keys cubic with
``a = -0.5``, stretched by the factor when downscaling (antialiasing: ``w(d) = cubic(d / f) / f``, support
``2f`` input pixels each side), output pixel ``i`` centred at input coordinate ``(i + 0.5) f - 0.5``,
weights normalised to sum 1 per output pixel, and taps outside the image taken from mirrored indices
(``... x1 x0 | x0 x1 ... x_{n-1} | x_{n-1} x_{n-2} ...``, edge repeated). Separable, so it is stored as two
dense 1-D resampling matrices ``Mh [H/f, H]`` and ``Mw [W/f, W]``: ``A x = Mh x Mw^T``, the exact adjoint
``A^T y = Mh^T y Mw`` and the exact pseudo-inverse ``A^+ y = pinv(Mh) y pinv(Mw)^T`` (the pseudo-inverse
of a Kronecker product is the Kronecker product of the pseudo-inverses).

``"average"`` is ``f x f`` average pooling: ``A^T y`` = nearest upsampling divided by ``f^2``, and since
``A A^T = I / f^2``, ``A^+ y = f^2 A^T y`` = nearest upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from psld.operators.base import LinearOperator, check_shape

_MODES = ("bicubic", "average")


def cubic(d: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel with parameter ``a`` (support ``[-2, 2]``)."""
    d = d.abs()
    d2, d3 = d * d, d * d * d
    inner = (a + 2) * d3 - (a + 3) * d2 + 1
    outer = a * d3 - 5 * a * d2 + 8 * a * d - 4 * a
    return torch.where(d <= 1, inner, torch.where(d < 2, outer, torch.zeros_like(d)))


def bicubic_matrix(n_in: int, factor: int) -> Tensor:
    """The ``[n_in // factor, n_in]`` antialiased bicubic downsampling matrix (float64); see module doc."""
    f = float(factor)
    n_out = n_in // factor
    centre = (torch.arange(n_out, dtype=torch.float64) + 0.5) * f - 0.5
    half = 2.0 * f  # support radius in input pixels
    left = torch.floor(centre - half).long()
    taps = int(2 * half) + 3
    j = left[:, None] + torch.arange(taps)[None, :]
    w = cubic((centre[:, None] - j.to(torch.float64)) / f) / f
    w = w / w.sum(1, keepdim=True)
    period = 2 * n_in
    jm = j % period
    jm = torch.where(jm >= n_in, period - 1 - jm, jm)
    return torch.zeros(n_out, n_in, dtype=torch.float64).scatter_add_(1, jm, w)


def upsample_nearest(y: Tensor, factor: int) -> Tensor:
    """Nearest-neighbour upsampling of the last two axes by an integer ``factor`` (each pixel -> f x f).

    Equal to ``F.interpolate(y, scale_factor=factor, mode="nearest")``; this is what the official code uses
    as the "transpose" of its super-resolution operator (it is not the adjoint).
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    return y.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


class SuperResolution(LinearOperator):
    """Downsampling ``(C, H, W) -> (C, H/f, W/f)`` by an integer ``factor`` (``H``, ``W`` divisible by it).

    ``mode="bicubic"`` (official, antialiased, see the module doc; the matrices are ``.matrices``) or
    ``"average"`` (``F.avg_pool2d``). Both have exact adjoints and closed-form pseudo-inverses.
    """

    def __init__(self, in_shape: Sequence[int], factor: int, mode: str = "bicubic"):
        shape = check_shape("in_shape", in_shape)
        if len(shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W) for SuperResolution, got {shape!r}")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a positive int, got {factor!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        c, h, w = shape
        if h % factor or w % factor:
            raise ValueError(f"factor {factor} must divide the image height and width, got H={h}, W={w}")
        super().__init__(shape, (c, h // factor, w // factor))
        self.factor = factor
        self.mode = mode
        self.adjoint_is_pinv = self.diagonal_projection = factor == 1
        if mode == "bicubic":
            mh, mw = bicubic_matrix(h, factor), bicubic_matrix(w, factor)
            self.matrices = (mh, mw)
            self._pinv_matrices = (torch.linalg.pinv(mh), torch.linalg.pinv(mw))
        else:
            self.matrices = None  # type: ignore[assignment]
            self._pinv_matrices = None  # type: ignore[assignment]

    @staticmethod
    def _sandwich(left: Tensor, t: Tensor, right_t: Tensor) -> Tensor:
        return torch.matmul(torch.matmul(left, t), right_t)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        if self.mode == "average":
            return F.avg_pool2d(x, self.factor) if self.factor > 1 else x
        mh, mw = (self._like(m, x) for m in self.matrices)
        return self._sandwich(mh, x, mw.transpose(0, 1))

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_output(y)
        if self.mode == "average":
            return upsample_nearest(y, self.factor) / (self.factor**2)
        mh, mw = (self._like(m, y) for m in self.matrices)
        return self._sandwich(mh.transpose(0, 1), y, mw)

    def pinv(self, y: Tensor, *, tol: float | None = None, max_iter: int = 500) -> Tensor:
        """Closed-form ``A^+ y`` (``tol`` and ``max_iter`` are ignored)."""
        self.check_output(y)
        if self.mode == "average":
            return upsample_nearest(y, self.factor)
        ph, pw = (self._like(m, y) for m in self._pinv_matrices)
        return self._sandwich(ph, y, pw.transpose(0, 1))

    def __repr__(self) -> str:
        return (
            f"SuperResolution(in_shape={self.in_shape}, factor={self.factor}, mode={self.mode!r}, "
            f"out_shape={self.out_shape})"
        )
