"""Every operator family against its dense matrix (built by applying the operator to basis vectors).

Small odd shapes (e.g. 3 x 7 x 5), float64, NOISY measurements ``y`` (not in ``range(A)``): ``pinv`` is
``numpy.linalg.pinv`` of the dense matrix, ``glue`` is ``A^T y + (I - A^T A) x`` ("adjoint") and
``x + A^+(y - A x)`` ("pinv"), and ``adjoint_is_pinv`` means ``A^T = A^+`` (so the "adjoint" glue is the
projection onto ``{A x = y}``). The rank-deficient compositions are the ones on which the former CG-on-
``A A^T`` pseudo-inverse diverged (relative errors 1e17, 2.6e48, NaN).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from psld.operators import (
    Blur,
    BoxInpainting,
    Compose,
    Denoising,
    Destriping,
    GaussianBlur,
    LinearOperator,
    MaskOperator,
    MatrixOperator,
    MotionBlur,
    OfficialTranspose,
    PinvNotConvergedWarning,
    RandomInpainting,
    SuperResolution,
    cgls,
)

F64 = torch.float64
SH = (3, 7, 5)
#: singular values below RCOND * s_max count as zero (the closed forms' documented float64 cut-off)
RCOND = 1e-10


def _rank_deficient_matrix() -> torch.Tensor:
    a = torch.randn(6, 9, generator=torch.Generator().manual_seed(3), dtype=F64)
    a[4] = 2 * a[0]
    a[5] = a[1] - a[2]
    return a


def _kernel() -> torch.Tensor:
    k = torch.rand(3, 5, generator=torch.Generator().manual_seed(4), dtype=F64)
    return k / k.sum()


#: name -> factory of a small operator; at least one per family and per closed-form / CGLS path
DENSE: dict[str, Callable[[], LinearOperator]] = {
    "random-per-image": lambda: RandomInpainting(SH, seed=1),
    "random-per-pixel-batched": lambda: RandomInpainting(SH, protocol="per-pixel", batch=2, seed=2),
    "box": lambda: BoxInpainting(SH, box=(3, 2), placement="random", margin=1, seed=3),
    "destripe-vertical": lambda: Destriping(SH, orientation="vertical", period=3, width=1),
    "destripe-horizontal": lambda: Destriping((1, 9, 4), period=4, width=2, phase=1),
    "denoising": lambda: Denoising(SH),
    "gaussian-reflect": lambda: GaussianBlur(SH, 5, 0.8),
    "gaussian-circular": lambda: GaussianBlur(SH, 3, 0.7, boundary="circular"),
    "motion-reflect": lambda: MotionBlur(SH, 5, 0.7, seed=1),
    "motion-reflect-fft": lambda: MotionBlur(SH, 5, 0.7, seed=2, method="fft"),
    "motion-circular": lambda: MotionBlur(SH, 3, 0.5, seed=0, boundary="circular"),
    "custom-reflect": lambda: Blur(SH, _kernel()),
    "custom-circular": lambda: Blur(SH, _kernel(), boundary="circular"),
    "sr-bicubic": lambda: SuperResolution((1, 6, 10), 2),
    "sr-average": lambda: SuperResolution((3, 9, 6), 3, "average"),
    "matrix-rank-deficient": lambda: MatrixOperator(_rank_deficient_matrix()),
    "matrix-batched": lambda: MatrixOperator(
        torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(6), dtype=F64)
    ),
    "official-transpose": lambda: OfficialTranspose(GaussianBlur(SH, 3, 0.8)),
    "compose-blur-sr": lambda: Compose(GaussianBlur((1, 6, 10), 3, 0.8), SuperResolution((1, 6, 10), 2)),
    "compose-mask-circular-gaussian": lambda: Compose(
        RandomInpainting(SH, seed=0), GaussianBlur(SH, 3, 1.0, boundary="circular")
    ),
    "compose-reflect-blur-mask": lambda: Compose(GaussianBlur(SH, 3, 0.8), RandomInpainting(SH, seed=1)),
    "compose-mask-destriping": lambda: Compose(
        RandomInpainting(SH, seed=0), Destriping(SH, period=3, width=1)
    ),
    "compose-motion-mask": lambda: Compose(MotionBlur(SH, 3, 0.5, seed=5), BoxInpainting(SH, box=3)),
}


def _batch(op: LinearOperator) -> int:
    if isinstance(op, MaskOperator) and op.batched:
        return op.mask.shape[0]
    if isinstance(op, MatrixOperator) and op.batched:
        return op.matrix.shape[0]
    return 2


def dense(op: LinearOperator, b: int, *, adjoint: bool = False) -> torch.Tensor:
    """The matrix of ``op`` (``[m, n]``) or of ``op.adjoint`` (``[n, m]``) on sample ``b``, by columns."""
    shape, f = (op.out_shape, op.adjoint) if adjoint else (op.in_shape, op.forward)
    n, nb = int(np.prod(shape)), _batch(op)
    cols = []
    for j in range(n):
        e = torch.zeros(nb, n, dtype=F64)
        e[b, j] = 1.0
        cols.append(f(e.reshape(nb, *shape))[b].flatten())
    return torch.stack(cols, 1)


def _draw(op: LinearOperator, seed: int):
    g = torch.Generator().manual_seed(seed)
    nb = _batch(op)
    x = torch.randn((nb, *op.in_shape), generator=g, dtype=F64)
    y = torch.randn((nb, *op.out_shape), generator=g, dtype=F64)  # noisy: generically not in range(A)
    return x, y


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


@pytest.mark.parametrize("name", list(DENSE))
@given(seed=st.integers(0, 2**31 - 1))
def test_pinv_and_glue_match_the_dense_matrix(name, seed):
    op = DENSE[name]()
    x, y = _draw(op, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PinvNotConvergedWarning)  # these small cases must converge
        p, gp = op.pinv(y), op.glue(x, y, "pinv")
    ga = op.glue(x, y, "adjoint")
    for b in range(x.shape[0]):
        A, At = dense(op, b), dense(op, b, adjoint=True)
        if not isinstance(op, OfficialTranspose):
            torch.testing.assert_close(At, A.T, rtol=0, atol=1e-12)
        P = torch.from_numpy(np.linalg.pinv(A.numpy(), rcond=RCOND))
        xb, yb = x[b].flatten(), y[b].flatten()
        assert _rel(p[b].flatten(), P @ yb) <= 1e-8, name
        assert _rel(gp[b].flatten(), xb + P @ (yb - A @ xb)) <= 1e-8, name
        expected_adjoint = At @ yb + xb - At @ (A @ xb)
        assert _rel(ga[b].flatten(), expected_adjoint) <= 1e-12, name
        if op.adjoint_is_pinv:  # A^T = A^+: the adjoint glue is then the pinv glue
            torch.testing.assert_close(A.T, P, rtol=0, atol=1e-12)
            assert _rel(ga[b].flatten(), xb + P @ (yb - A @ xb)) <= 1e-12
        else:
            assert float((A.T - P).abs().max()) > 1e-6, f"{name}: rows are orthonormal but not flagged"


@pytest.mark.parametrize(
    "name", ["compose-mask-circular-gaussian", "compose-reflect-blur-mask", "compose-mask-destriping"]
)
def test_noisy_pinv_on_rank_deficient_compositions_is_minimum_norm(name):
    """The three issue cases: A^+ y is the least-squares solution of least norm, hence in range(A^T)."""
    op = DENSE[name]()
    _, y = _draw(op, 0)
    A = dense(op, 0)
    rank = int(torch.linalg.matrix_rank(A, rtol=RCOND))
    assert rank < min(A.shape)  # rank deficient, so y has a component outside range(A)
    P = torch.linalg.pinv(A, rtol=RCOND)
    yb = y[0].flatten()
    assert float((yb - A @ (P @ yb)).norm()) > 0.1 * float(yb.norm())  # genuinely noisy
    p = op.pinv(y)[0].flatten()
    assert torch.isfinite(p).all() and _rel(p, P @ yb) <= 1e-10
    null = torch.eye(A.shape[1], dtype=F64) - P @ A  # projector onto null(A)
    assert float((null @ p).norm()) <= 1e-10 * float(p.norm())
    g = op.glue(torch.randn(1, *op.in_shape, dtype=F64), y, "pinv")
    assert torch.isfinite(g).all()


def test_cgls_error_bound_and_stopping_rule():
    """Stated bound: ``||x - A^+ y|| <= ratio ||A^T y|| / s_min^2``, for any iterate (also unconverged)."""
    # psld's smooth kernel, the one this was written on: with the official-style default kernel the
    # recursive CGLS residual ends up to 3e-12 away from the recomputed one (round-off), above atol 1e-13
    op = MotionBlur((1, 9, 7), 5, 0.8, seed=4, kind="smooth", correlate=False)
    A = dense(op, 0)
    sv = torch.linalg.svdvals(A)
    s_min = float(sv[sv > RCOND * sv[0]][-1])
    P = torch.linalg.pinv(A, rtol=RCOND)
    y = torch.randn(3, *op.out_shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    aty = op.adjoint(y).flatten(1).norm(dim=1)
    for max_iter in (2, 5, 20, 500):
        x, ratio = cgls(op.forward, op.adjoint, y, max_iter=max_iter)
        true_ratio = op.adjoint(y - op(x)).flatten(1).norm(dim=1) / aty
        torch.testing.assert_close(ratio, true_ratio, rtol=1e-3, atol=1e-13)  # reported = measured
        err = (x.flatten(1) - y.flatten(1) @ P.T).norm(dim=1)
        assert bool((err <= ratio * aty / s_min**2 * (1 + 1e-6) + 1e-11).all())
    assert float(ratio.max()) <= 1e-12  # converged at the documented tolerance within 500 iterations
    x, ratio = cgls(op.forward, op.adjoint, y, tol=1e-3)
    assert float(ratio.max()) <= 1e-3 and float(ratio.max()) > 1e-12  # stops at tol, not later
    with pytest.warns(PinvNotConvergedWarning, match="max_iter=3"):
        op.pinv(y, max_iter=3)
    zero, r0 = cgls(op.forward, op.adjoint, torch.zeros_like(y))
    assert torch.equal(zero, torch.zeros_like(zero)) and torch.equal(r0, torch.zeros(3, dtype=F64))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tol": -1.0}, "tol must be finite and >= 0"),
        ({"tol": float("nan")}, "tol must be finite"),
        ({"tol": float("inf")}, "tol must be finite"),
        ({"max_iter": -1}, "max_iter must be an int >= 0"),
        ({"max_iter": 2.5}, "max_iter must be an int"),
        ({"max_iter": True}, "max_iter must be an int"),
    ],
)
def test_cgls_rejects_bad_arguments(kwargs, match):
    op = DENSE["compose-mask-destriping"]()
    with pytest.raises(ValueError, match=match):
        op.pinv(torch.zeros(1, *op.out_shape, dtype=F64), **kwargs)
