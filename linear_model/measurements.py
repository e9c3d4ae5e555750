"""Measurement matrices ``A`` ``[l, d]`` (or ``[B, l, d]``), the latent Gram ``M = (AS)^T(AS)`` and noisy
measurements ``y = A x0 + sigma_y n`` (docs/theory.md §2, A2, T2, T9).

Matrices are plain float64 tensors; wrap one in ``psld.operators.MatrixOperator`` to use it in the sampler.
Random constructors draw from ``seed`` (an int or a ``torch.Generator``) or, if given, ``generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from linear_model._batch import (
    as_float,
    as_generator,
    as_matrix,
    check_pos_int,
    check_sigma,
    matmul,
    matvec,
    mT,
    pinv_full_column,
    rng,
    sym,
)
from linear_model.autoencoder import check_basis

__all__ = [
    "gaussian_matrix",
    "row_mask_matrix",
    "isotropic_matrix",
    "latent_gram",
    "Spectrum",
    "spectrum",
    "measure",
]

Seed = int | torch.Generator | None


def _shape(l: int, d: int, batch: int | None) -> tuple[int, ...]:
    l = check_pos_int(l, "l")
    d = check_pos_int(d, "d")
    return (l, d) if batch is None else (check_pos_int(batch, "batch"), l, d)


def gaussian_matrix(
    l: int, d: int, *, seed: Seed = 0, generator: torch.Generator | None = None, batch: int | None = None
) -> Tensor:
    """Gaussian ``A`` with i.i.d. entries ``N(0, 1/l)`` (so ``E[A^T A] = I_d``), ``[l, d]`` or
    ``[batch, l, d]``.

    >>> gaussian_matrix(3, 5, seed=0).shape
    torch.Size([3, 5])
    """
    shape = _shape(l, d, batch)
    g = as_generator(seed if generator is None else generator)
    return torch.randn(shape, generator=g, dtype=torch.float64) / shape[-2] ** 0.5


def row_mask_matrix(
    l: int, d: int, seed: Seed = 0, *, generator: torch.Generator | None = None, batch: int | None = None
) -> Tensor:
    """Row mask: ``l`` distinct rows of ``I_d`` (sorted), chosen uniformly at random; ``A A^T = I_l``.

    >>> A = row_mask_matrix(2, 4, seed=0)
    >>> bool(torch.equal(A @ A.T, torch.eye(2, dtype=torch.float64)))
    True
    """
    shape = _shape(l, d, batch)
    if shape[-2] > shape[-1]:
        raise ValueError(f"l must be <= d for a row mask, got l={shape[-2]} > d={shape[-1]}")
    g = as_generator(seed if generator is None else generator)
    eye = torch.eye(shape[-1], dtype=torch.float64)
    n = 1 if batch is None else shape[0]
    rows = [eye[torch.randperm(shape[-1], generator=g)[: shape[-2]].sort().values] for _ in range(n)]
    out = torch.stack(rows)
    return out[0] if batch is None else out


def isotropic_matrix(
    S: Tensor, s: float, l: int, seed: Seed = 0, *, generator: torch.Generator | None = None
) -> Tensor:
    """``A = sqrt(s) Q S^+ + R (I - P)`` with ``Q`` ``[l, k]`` orthonormal and ``R`` Gaussian ``N(0, 1/l)``,
    so that ``A S = sqrt(s) Q`` and ``M = (AS)^T(AS) = s I_k`` exactly (docs/theory.md T2). Needs ``l >= k``.
    ``S^+ = S^T`` for orthonormal ``S``; batched ``S`` gives batched ``A``.

    >>> from linear_model.autoencoder import random_subspace
    >>> S = random_subspace(6, 2, seed=0)
    >>> M = latent_gram(isotropic_matrix(S, 3.0, 4), S)
    >>> bool(torch.allclose(M, 3.0 * torch.eye(2, dtype=torch.float64)))
    True
    """
    S = check_basis(S, "S")
    s = as_float(s, "s")
    if s <= 0:
        raise ValueError(f"s must be > 0, got {s}")
    l = check_pos_int(l, "l")
    d, k = S.shape[-2:]
    if l < k:
        raise ValueError(f"l must be >= k={k} for M = s I to be possible, got l={l}")
    g = as_generator(seed if generator is None else generator)
    lead = S.shape[:-2]
    Q, _ = torch.linalg.qr(torch.randn((*lead, l, k), generator=g, dtype=torch.float64))
    R = torch.randn((*lead, l, d), generator=g, dtype=torch.float64) / l**0.5
    S_pinv, _ = pinv_full_column(S)
    P = S @ S_pinv
    return s**0.5 * Q @ S_pinv + R @ (torch.eye(d, dtype=torch.float64) - P)


def latent_gram(A: Tensor, S: Tensor) -> Tensor:
    """``M = B^T B`` with ``B = A S`` (symmetrised), ``[k, k]`` or ``[B, k, k]``."""
    B = matmul(as_matrix(A, "A", dims="l, d"), as_matrix(S, "S", dims="d, k"), "A", "S")
    return sym(mT(B) @ B)


@dataclass(frozen=True)
class Spectrum:
    """Spectrum of ``M``: ascending ``eigvals`` ``[(B,) k]`` (clamped at 0), ``s_min``, ``s_max``,
    ``kappa = s_max/s_min`` (``inf`` when rank-deficient) and numerical ``rank``; per instance."""

    eigvals: Tensor
    s_min: Tensor
    s_max: Tensor
    kappa: Tensor
    rank: Tensor


def spectrum(A: Tensor, S: Tensor) -> Spectrum:
    """Eigen-summary of ``M = (AS)^T(AS)``; the rank comes from the singular values of ``AS``.

    >>> sp = spectrum(torch.eye(3, dtype=torch.float64)[:2], torch.eye(3, dtype=torch.float64)[:, :2])
    >>> sp.eigvals.tolist(), int(sp.rank), float(sp.kappa)
    ([1.0, 1.0], 2, 1.0)
    """
    B = matmul(as_matrix(A, "A", dims="l, d"), as_matrix(S, "S", dims="d, k"), "A", "S")
    l, k = B.shape[-2:]
    sv = torch.linalg.svdvals(B)
    tol = max(l, k) * torch.finfo(torch.float64).eps * sv.amax(-1, keepdim=True)
    rank = (sv > tol).sum(-1)
    eig = torch.linalg.eigvalsh(sym(mT(B) @ B)).clamp_min(0.0)
    s_min, s_max = eig[..., 0], eig[..., -1]
    kappa = torch.where(rank == k, s_max / s_min.clamp_min(torch.finfo(torch.float64).tiny), torch.inf)
    return Spectrum(eig, s_min, s_max, kappa, rank)


def measure(A: Tensor, x0: Tensor, sigma_y: float = 0.0, generator: Seed = None) -> Tensor:
    """``y = A x0 + sigma_y n`` with ``n ~ N(0, I_l)``; ``x0`` is ``[..., d]`` (``[B, ..., d]`` for a
    batched ``A``).

    >>> A = torch.eye(2, dtype=torch.float64)
    >>> measure(A, torch.ones(2, dtype=torch.float64)).tolist()
    [1.0, 1.0]
    """
    A = as_matrix(A, "A", dims="l, d")
    sigma = check_sigma(sigma_y, "sigma_y")
    y = matvec(A, x0, "x0")
    if sigma > 0:
        y = y + sigma * torch.randn(y.shape, generator=rng(generator), dtype=y.dtype)
    return y
