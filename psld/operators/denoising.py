"""Denoising: the identity operator (``y = x + n``)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from psld.operators.base import LinearOperator


class Denoising(LinearOperator):
    """Identity ``A = I`` on any ``in_shape``; ``A^T = A^+ = I`` and the rows are orthonormal."""

    adjoint_is_pinv = True
    diagonal_projection = True

    def __init__(self, in_shape: Sequence[int]):
        super().__init__(in_shape, in_shape)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_output(y)
        return y

    def gram(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def pinv(self, y: Tensor, *, tol: float | None = None, max_iter: int = 500) -> Tensor:
        """``A^+ y = y``."""
        self.check_output(y)
        return y
