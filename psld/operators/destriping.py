"""Destriping: periodic stripes of lost rows or columns, as a :class:`MaskOperator`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from psld.operators.inpainting import MaskOperator, _image_shape

_ORIENTATIONS = ("horizontal", "vertical")


def _int_arg(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value


class Destriping(MaskOperator):
    """Stripes of missing lines: ``"horizontal"`` loses rows, ``"vertical"`` loses columns.

    Line ``i`` (row or column index) is lost when ``(i - phase) mod period < width``, i.e. ``width``
    consecutive lines out of every ``period``, the first lost line being ``phase``. Requires
    ``1 <= width < period`` and ``0 <= phase < period``. The mask (``.mask``, ``[H, W]``) is shared over
    channels and batch.

    >>> A = Destriping((1, 6, 2), period=3, width=1, phase=1)
    >>> A.mask[:, 0].tolist()
    [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        *,
        orientation: str = "horizontal",
        period: int = 8,
        width: int = 2,
        phase: int = 0,
    ):
        c, h, w = _image_shape(in_shape, "Destriping")
        if orientation not in _ORIENTATIONS:
            raise ValueError(f"orientation must be one of {_ORIENTATIONS}, got {orientation!r}")
        period = _int_arg("period", period, 2)
        width = _int_arg("width", width, 1, period - 1)
        phase = _int_arg("phase", phase, 0, period - 1)
        n = h if orientation == "horizontal" else w
        lost = ((torch.arange(n) - phase) % period) < width
        line = (~lost).to(torch.float32)
        mask = line[:, None].expand(h, w) if orientation == "horizontal" else line[None, :].expand(h, w)
        super().__init__(mask.contiguous(), (c, h, w))
        self.orientation = orientation
        self.period = period
        self.width = width
        self.phase = phase
