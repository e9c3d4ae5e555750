"""The official code's pseudo-transposes, for the parity preset only.

The official PSLD code glues with ``At = identity`` for inpainting (masks), blur and denoising, and with
nearest upsampling (``F.interpolate(y, scale_factor=f)``, no ``1/f^2``) for super-resolution. These are
**not** adjoints of the forward operators (except for denoising); :class:`OfficialTranspose` exists only to
reproduce the official gluing step.
"""

from __future__ import annotations

from torch import Tensor

from psld.operators.base import LinearOperator
from psld.operators.blur import Convolution
from psld.operators.denoising import Denoising
from psld.operators.inpainting import MaskOperator
from psld.operators.resize import SuperResolution, upsample_nearest


class OfficialTranspose(LinearOperator):
    """``op`` with its ``adjoint`` replaced by the official code's pseudo-transpose (NOT an adjoint).

    Supported: masks (:class:`MaskOperator` and subclasses), :class:`Convolution` blurs and
    :class:`Denoising` (identity), and :class:`SuperResolution` (nearest upsampling by the factor). Other
    operators raise ``ValueError``. ``forward`` is ``op.forward``; ``pinv`` is ``op.pinv`` (the true
    pseudo-inverse), so ``glue(..., mode="pinv")`` is unaffected; ``gram`` and ``glue(..., "adjoint")`` use
    the pseudo-transpose. ``adjoint_is_pinv`` is False. The wrapped operator is ``.operator``.
    """

    def __init__(self, op: LinearOperator):
        if isinstance(op, OfficialTranspose):
            op = op.operator
        if isinstance(op, SuperResolution):
            kind = "nearest"
        elif isinstance(op, (MaskOperator, Convolution, Denoising)):
            kind = "identity"
        else:
            raise ValueError(
                f"op must be a mask, blur, denoising or super-resolution operator for OfficialTranspose, "
                f"got {type(op).__name__}"
            )
        super().__init__(op.in_shape, op.out_shape)
        self.operator: LinearOperator = op
        self.transpose_kind = kind

    def forward(self, x: Tensor) -> Tensor:
        return self.operator.forward(x)

    def adjoint(self, y: Tensor) -> Tensor:
        """The official pseudo-transpose: identity, or nearest upsampling for super-resolution."""
        self.check_output(y)
        if self.transpose_kind == "nearest":
            return upsample_nearest(y, self.operator.factor)  # type: ignore[attr-defined]
        return y

    def pinv(self, y: Tensor, *, tol: float | None = None, max_iter: int = 500) -> Tensor:
        return self.operator.pinv(y, tol=tol, max_iter=max_iter)

    def __repr__(self) -> str:
        return f"OfficialTranspose({self.operator!r}, transpose={self.transpose_kind!r})"
