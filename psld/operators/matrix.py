"""Dense matrices acting on vectors, and composition of operators."""

from __future__ import annotations

import torch
from torch import Tensor

from psld.operators.base import LinearOperator


class MatrixOperator(LinearOperator):
    """``A x`` for a dense ``A``: one matrix ``[l, d]`` (``in_shape = (d,)``, ``out_shape = (l,)``), or a
    batch of matrices ``[N, l, d]``, one per problem; then inputs must have batch size exactly ``N`` and
    row ``b`` is multiplied by ``A[b]``.

    The pseudo-inverse is computed once at construction in float64 (``torch.linalg.pinv`` with its default
    ``rtol``, so rank-deficient matrices are handled) and ``adjoint_is_pinv`` is detected numerically
    (``max |A A^T - I| <= 1e-6`` for every matrix of the batch). The matrix is ``.matrix`` (as given, on CPU).

    >>> import torch
    >>> A = MatrixOperator(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    >>> A.adjoint_is_pinv, A.out_shape
    (True, (2,))
    """

    def __init__(self, A: Tensor):
        if not isinstance(A, Tensor):
            try:
                A = torch.as_tensor(A, dtype=torch.float64)
            except Exception:
                raise ValueError(f"A must be a 2-D or 3-D tensor, got {type(A).__name__}") from None
        if A.dim() not in (2, 3) or A.numel() == 0:
            raise ValueError(f"A must have shape [l, d] or [N, l, d], sizes > 0, got {list(A.shape)}")
        if A.is_complex() or not A.is_floating_point():
            raise ValueError(f"A must be a real floating-point tensor, got dtype {A.dtype}")
        a = A.detach().to("cpu")
        if not bool(torch.isfinite(a).all()):
            raise ValueError("A must be finite")
        l, d = a.shape[-2:]
        super().__init__((d,), (l,))
        self.matrix = a.clone()
        a64 = a.to(torch.float64)
        self._pinv = torch.linalg.pinv(a64)
        gram = a64 @ a64.transpose(-1, -2)
        eye = torch.eye(l, dtype=torch.float64)
        self.adjoint_is_pinv = bool(((gram - eye).abs().max() <= 1e-6).item())

    @property
    def batched(self) -> bool:
        return self.matrix.dim() == 3

    def _check_n(self, t: Tensor, name: str) -> None:
        if self.batched and t.shape[0] != self.matrix.shape[0]:
            raise ValueError(
                f"{name} must have batch size {self.matrix.shape[0]} for a MatrixOperator holding "
                f"{self.matrix.shape[0]} matrices, got {t.shape[0]}"
            )

    @staticmethod
    def _apply(m: Tensor, v: Tensor) -> Tensor:
        """``m v`` per row: ``m`` is ``[r, c]`` or ``[N, r, c]``, ``v`` is ``[N, c]``."""
        if m.dim() == 2:
            return v @ m.transpose(0, 1)
        return torch.matmul(m, v.unsqueeze(-1)).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        self._check_n(x, "x")
        return self._apply(self._like(self.matrix, x), x)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_output(y)
        self._check_n(y, "y")
        return self._apply(self._like(self.matrix, y).transpose(-1, -2), y)

    def pinv(self, y: Tensor, *, tol: float | None = None, max_iter: int = 500) -> Tensor:
        """``A^+ y`` with the precomputed pseudo-inverse (``tol`` and ``max_iter`` are ignored)."""
        self.check_output(y)
        self._check_n(y, "y")
        return self._apply(self._like(self._pinv, y), y)

    def __repr__(self) -> str:
        n = f", matrices={self.matrix.shape[0]}" if self.batched else ""
        return f"MatrixOperator(in_shape={self.in_shape}, out_shape={self.out_shape}{n})"


class Compose(LinearOperator):
    """The composition that applies ``ops`` in order: ``Compose(A1, A2)(x) = A2(A1(x))``.

    Shapes must chain (``ops[i].out_shape == ops[i + 1].in_shape``). The adjoint applies the adjoints in
    reverse order; ``pinv`` is CGLS (the base class: minimum-norm least squares for any ``y``). The
    composition has orthonormal rows when every factor has. The factors are ``.ops``.
    """

    def __init__(self, *ops: LinearOperator):
        if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
            ops = tuple(ops[0])
        if len(ops) == 0:
            raise ValueError("ops must hold at least one LinearOperator")
        for i, op in enumerate(ops):
            if not isinstance(op, LinearOperator):
                raise ValueError(f"ops[{i}] must be a LinearOperator, got {type(op).__name__}")
        for i in range(len(ops) - 1):
            if ops[i].out_shape != ops[i + 1].in_shape:
                raise ValueError(
                    f"ops do not chain: ops[{i}].out_shape {ops[i].out_shape} != ops[{i + 1}].in_shape "
                    f"{ops[i + 1].in_shape}"
                )
        super().__init__(ops[0].in_shape, ops[-1].out_shape)
        self.ops: tuple[LinearOperator, ...] = tuple(ops)
        # a product of partial isometries need not be one; of diagonal 0/1 projections it is
        self.diagonal_projection = all(op.diagonal_projection for op in ops)
        self.adjoint_is_pinv = self.diagonal_projection or (len(ops) == 1 and ops[0].adjoint_is_pinv)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        for op in self.ops:
            x = op.forward(x)
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_output(y)
        for op in reversed(self.ops):
            y = op.adjoint(y)
        return y

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(op) for op in self.ops) + ")"
