"""Masking operators: random-pixel inpainting, box inpainting, and the shared :class:`MaskOperator`.

The measurement keeps the image shape, with zeros where pixels are missing (as the official code does),
so ``out_shape == in_shape``. A binary mask ``M`` gives ``A = diag(M)``: ``A^T = A``, ``A A^T = A`` is the
identity on the kept pixels, and ``A^+ = A``; the rows of ``A`` are orthonormal in the sense that the
"adjoint" glue ``A^T y + (I - A^T A) x`` is exactly the projection onto ``{A x = y}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from psld.operators.base import LinearOperator, as_generator, check_shape

_PROTOCOLS = ("per-image", "per-pixel")
_PLACEMENTS = ("centre", "random", "official")


def _image_shape(in_shape: Sequence[int], owner: str) -> tuple[int, int, int]:
    shape = check_shape("in_shape", in_shape)
    if len(shape) != 3:
        raise ValueError(f"in_shape must be (C, H, W) for {owner}, got {shape!r}")
    return shape  # type: ignore[return-value]


def _check_batch_arg(batch) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return batch


class MaskOperator(LinearOperator):
    """Pixel mask ``A x = M * x`` (``M`` binary, shared over channels).

    ``mask`` is either one mask ``[H, W]`` used for every image of any batch, or a batch of masks
    ``[N, H, W]``, one per image; then inputs must have batch size exactly ``N`` (image ``b`` is masked by
    ``mask[b]``). Entries must be 0 (missing) or 1 (observed); bool tensors are accepted.
    ``in_shape = out_shape = (C, H, W)``.

    >>> import torch
    >>> A = MaskOperator(torch.tensor([[1.0, 0.0]]), (1, 1, 2))
    >>> A(torch.tensor([[[[3.0, 4.0]]]])).flatten().tolist()
    [3.0, 0.0]
    """

    adjoint_is_pinv = True
    diagonal_projection = True

    def __init__(self, mask: Tensor, in_shape: Sequence[int]):
        shape = _image_shape(in_shape, type(self).__name__)
        if not isinstance(mask, Tensor):
            try:
                mask = torch.as_tensor(mask)
            except Exception:
                raise ValueError(f"mask must be a tensor, got {type(mask).__name__}") from None
        if mask.dim() not in (2, 3) or tuple(mask.shape[-2:]) != shape[1:]:
            raise ValueError(
                f"mask must have shape [H, W] or [N, H, W] with (H, W) = {shape[1:]}, got {list(mask.shape)}"
            )
        if mask.dim() == 3 and mask.shape[0] < 1:
            raise ValueError("mask batch must hold at least one mask")
        m = mask.detach().to("cpu")
        if m.dtype == torch.bool:
            m = m.to(torch.float32)
        elif not (
            m.is_floating_point()
            or m.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
        ):
            raise ValueError(f"mask must be a real or bool tensor, got dtype {m.dtype}")
        m = m.to(torch.float32)
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask entries must be 0 (missing) or 1 (observed)")
        super().__init__(shape, shape)
        self.mask = m.clone()

    @property
    def batched(self) -> bool:
        """True when the operator holds one mask per image (``mask`` is ``[N, H, W]``)."""
        return self.mask.dim() == 3

    def _mask_for(self, t: Tensor, name: str) -> Tensor:
        m = self._like(self.mask, t)
        if m.dim() == 3:
            if t.shape[0] != m.shape[0]:
                raise ValueError(
                    f"{name} must have batch size {m.shape[0]} for {type(self).__name__} with one mask per "
                    f"image, got {t.shape[0]}"
                )
            return m[:, None]
        return m

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return x * self._mask_for(x, "x")

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_output(y)
        return y * self._mask_for(y, "y")

    def gram(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def pinv(self, y: Tensor, *, tol: float | None = None, max_iter: int = 500) -> Tensor:
        """``A^+ y = M * y`` (exact; ``tol`` and ``max_iter`` are ignored)."""
        return self.adjoint(y)

    def __repr__(self) -> str:
        n = self.mask.shape[0] if self.batched else 1
        return f"{type(self).__name__}(in_shape={self.in_shape}, masks={n})"


def _pack(masks: list[Tensor]) -> Tensor:
    return masks[0] if len(masks) == 1 else torch.stack(masks)


def _check_prob(name: str, p) -> float:
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {p!r}") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {p!r}")
    return p


class RandomInpainting(MaskOperator):
    """Randomly dropped pixels (the same positions in every channel).

    Protocols:

    * ``"per-image"`` (official code): per image, ``p ~ U(drop_range)`` (or ``p = drop``), and exactly
      ``int(p * H * W)`` pixel positions are dropped, drawn without replacement.
    * ``"per-pixel"`` (paper text): every pixel is dropped independently with probability ``p``, where
      ``p = drop`` or, per image, ``p ~ U(drop_range)``.

    ``batch == 1`` gives one mask ``[H, W]`` shared by any input batch; ``batch = N > 1`` gives one mask per
    image (``[N, H, W]``, inputs must then have batch size ``N``). The drawn probabilities are in ``.drop``
    (a float64 tensor ``[batch]``). Randomness comes only from ``seed`` (int or ``torch.Generator``).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        *,
        drop: float | None = None,
        drop_range: tuple[float, float] = (0.3, 0.7),
        protocol: str = "per-image",
        batch: int = 1,
        seed: int | torch.Generator | None = 0,
    ):
        c, h, w = _image_shape(in_shape, "RandomInpainting")
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, got {protocol!r}")
        batch = _check_batch_arg(batch)
        if drop is not None:
            drop = _check_prob("drop", drop)
        else:
            try:
                lo, hi = (float(v) for v in drop_range)
            except (TypeError, ValueError):
                raise ValueError(f"drop_range must be a pair (lo, hi), got {drop_range!r}") from None
            if not (0.0 <= lo <= hi <= 1.0):
                raise ValueError(f"drop_range must satisfy 0 <= lo <= hi <= 1, got {drop_range!r}")
        g = as_generator(seed)
        n = h * w
        masks, ps = [], []
        for _ in range(batch):
            if drop is None:
                p = lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))
            else:
                p = drop
            if protocol == "per-image":
                k = int(p * n)
                flat = torch.ones(n, dtype=torch.float32)
                flat[torch.randperm(n, generator=g)[:k]] = 0.0
                m = flat.reshape(h, w)
            else:
                u = torch.rand((h, w), generator=g, dtype=torch.float64)
                m = (u >= p).to(torch.float32)
            masks.append(m)
            ps.append(p)
        super().__init__(_pack(masks), (c, h, w))
        self.protocol = protocol
        self.drop = torch.tensor(ps, dtype=torch.float64)


class BoxInpainting(MaskOperator):
    """A missing rectangle (``inverse=True``: only the rectangle is observed, the "extreme" task).

    ``box`` is the side (int) or ``(height, width)``. ``placement="centre"`` puts the top-left corner at
    ``((H - h) // 2, (W - w) // 2)``; ``"random"`` draws it uniformly with at least ``margin`` pixels between
    the box and every image border (top in ``[margin, H - h - margin]``, inclusive); ``"official"`` draws it
    as the official code does (numpy ``randint(margin, H - h - margin)``: the upper bound excluded, so top
    in ``[margin, H - h - margin - 1]``). Official settings: SD 256 box on 512 images, LDM 128 on 256,
    official placement, margin 16. ``batch`` works as in
    :class:`RandomInpainting`; the boxes' top-left corners are in ``.corners`` (``[batch, 2]`` int64).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        *,
        box: int | tuple[int, int] = 128,
        placement: str = "centre",
        margin: int = 16,
        batch: int = 1,
        seed: int | torch.Generator | None = 0,
        inverse: bool = False,
    ):
        c, h, w = _image_shape(in_shape, "BoxInpainting")
        if placement not in _PLACEMENTS:
            raise ValueError(f"placement must be one of {_PLACEMENTS}, got {placement!r}")
        batch = _check_batch_arg(batch)
        if isinstance(box, int) and not isinstance(box, bool):
            bh, bw = box, box
        else:
            try:
                bh, bw = (int(v) for v in box)  # type: ignore[union-attr]
            except (TypeError, ValueError):
                raise ValueError(f"box must be an int or a pair (height, width), got {box!r}") from None
        if bh < 1 or bw < 1:
            raise ValueError(f"box sides must be positive, got {box!r}")
        if bh > h or bw > w:
            raise ValueError(f"box {(bh, bw)} is larger than the image {(h, w)}")
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise ValueError(f"margin must be a non-negative int, got {margin!r}")
        spare = 1 if placement == "official" else 0  # numpy's randint(lo, hi) needs hi > lo
        if placement != "centre" and (bh + 2 * margin + spare > h or bw + 2 * margin + spare > w):
            raise ValueError(
                f"box {(bh, bw)} with margin {margin} on each side does not fit in the image {(h, w)}"
            )
        g = as_generator(seed)
        masks, corners = [], []
        for _ in range(batch):
            if placement == "centre":
                top, left = (h - bh) // 2, (w - bw) // 2
            else:
                top = int(torch.randint(margin, h - bh - margin + 1 - spare, (), generator=g))
                left = int(torch.randint(margin, w - bw - margin + 1 - spare, (), generator=g))
            m = torch.ones(h, w, dtype=torch.float32)
            m[top : top + bh, left : left + bw] = 0.0
            masks.append(1.0 - m if inverse else m)
            corners.append((top, left))
        super().__init__(_pack(masks), (c, h, w))
        self.box = (bh, bw)
        self.placement = placement
        self.margin = margin
        self.inverse = bool(inverse)
        self.corners = torch.tensor(corners, dtype=torch.int64)
