"""Shared helpers: argument checks and batched linear algebra with an optional instance batch.

A *matrix* argument is ``[r, c]`` or ``[B, r, c]`` (``B`` independent problem instances). A *vector*
argument that meets a batched matrix has the instance axis first, ``[B, ..., c]``; against an unbatched
matrix any leading shape ``[..., c]`` is allowed. Every routine raises ``ValueError`` naming the
offending argument.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

from psld.operators.base import as_generator

__all__ = [
    "as_generator",
    "rng",
    "as_float",
    "as_matrix",
    "as_tensor",
    "batch_of",
    "common_batch",
    "align",
    "matvec",
    "matmul",
    "mT",
    "sym",
    "rank_tol",
    "sqrt_psd",
    "check_sigma",
    "check_pos_int",
    "draw_gaussian",
    "pinv_full_column",
]


def rng(generator) -> torch.Generator | None:
    """A generator from a seed or generator; ``None`` stays ``None`` (torch's default generator)."""
    return None if generator is None else as_generator(generator)


def as_tensor(x, name: str) -> Tensor:
    """``x`` as a float64 tensor (finite), or ``ValueError`` naming ``name``."""
    try:
        t = torch.as_tensor(x, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a real tensor or number, got {type(x).__name__}") from None
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    return t


def as_float(x, name: str) -> float:
    """A finite Python float from a number or a 0-d tensor."""
    t = as_tensor(x, name)
    if t.numel() != 1:
        raise ValueError(f"{name} must be a scalar, got shape {list(t.shape)}")
    return float(t)


def as_matrix(x, name: str, *, square: bool = False, dims: str = "r, c") -> Tensor:
    """A float64 ``[r, c]`` or ``[B, r, c]`` tensor (``dims`` names the axes in the error message)."""
    t = as_tensor(x, name)
    if t.dim() not in (2, 3) or t.shape[-1] == 0 or t.shape[-2] == 0:
        shape = list(t.shape)
        raise ValueError(f"{name} must be a non-empty [{dims}] or [B, {dims}] matrix, got shape {shape}")
    if square and t.shape[-1] != t.shape[-2]:
        raise ValueError(f"{name} must be square, got shape {list(t.shape)}")
    return t


def batch_of(m: Tensor) -> int | None:
    """Instance batch size of a matrix (``None`` when unbatched)."""
    return m.shape[0] if m.dim() == 3 else None


def common_batch(**mats: Tensor | None) -> int | None:
    """The shared instance batch size of several matrices; ``ValueError`` when two batched ones differ."""
    seen: dict[str, int] = {}
    for name, m in mats.items():
        if m is not None and m.dim() == 3:
            seen[name] = m.shape[0]
    if len(set(seen.values())) > 1:
        desc = ", ".join(f"{n}: {b}" for n, b in seen.items())
        raise ValueError(f"instance batch sizes differ ({desc})")
    return next(iter(seen.values()), None)


def mT(m: Tensor) -> Tensor:
    """Transpose of the last two axes."""
    return m.transpose(-1, -2)


def sym(m: Tensor) -> Tensor:
    """``(m + m^T)/2``."""
    return 0.5 * (m + mT(m))


def matmul(a: Tensor, b: Tensor, name_a: str, name_b: str) -> Tensor:
    """``a @ b`` for matrices with optional instance batches, with named shape errors."""
    common_batch(**{name_a: a, name_b: b})
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"{name_a} has {a.shape[-1]} columns but {name_b} has {b.shape[-2]} rows "
            f"(shapes {list(a.shape)} and {list(b.shape)})"
        )
    return a @ b


def align(v: Tensor, like: Tensor) -> Tensor:
    """Insert singleton axes after the instance axis of ``v`` (``[B, c]``) to broadcast with ``like``
    (``[B, ..., c]``); an unbatched ``[c]`` is returned as is."""
    if v.dim() <= 1:
        return v
    extra = like.dim() - v.dim()
    if extra <= 0:
        return v
    return v.reshape(v.shape[0], *([1] * extra), *v.shape[1:])


def matvec(m: Tensor, v: Tensor, name: str = "v") -> Tensor:
    """``m v`` applied along the last axis of ``v``.

    ``m`` ``[r, c]``: ``v`` is ``[..., c]``. ``m`` ``[B, r, c]``: ``v`` is ``[B, ..., c]`` and instance
    ``b`` uses ``m[b]``.

    >>> m = torch.arange(6.).reshape(2, 3)
    >>> matvec(m, torch.ones(4, 3)).shape
    torch.Size([4, 2])
    """
    if not isinstance(v, Tensor):
        v = as_tensor(v, name)
    if v.dim() == 0 or v.shape[-1] != m.shape[-1]:
        raise ValueError(f"{name} must have last dimension {m.shape[-1]}, got shape {list(v.shape)}")
    m = m.to(device=v.device, dtype=v.dtype)
    if m.dim() == 2:
        return v @ mT(m)
    b = m.shape[0]
    if v.dim() < 2 or v.shape[0] != b:
        raise ValueError(
            f"{name} must have shape [{b}, ..., {m.shape[-1]}] (instance batch first) for a batched "
            f"matrix, got {list(v.shape)}"
        )
    out = torch.bmm(v.reshape(b, -1, v.shape[-1]), mT(m))
    return out.reshape(*v.shape[:-1], m.shape[-2])


def rank_tol(sv: Tensor, rows: int, cols: int) -> Tensor:
    """numpy's ``matrix_rank`` tolerance ``max(r, c) * eps * sigma_max`` (per instance, keepdim)."""
    smax = sv.amax(dim=-1, keepdim=True) if sv.numel() else sv
    return max(rows, cols) * torch.finfo(torch.float64).eps * smax


def sqrt_psd(cov: Tensor, name: str = "cov") -> tuple[Tensor, Tensor, Tensor]:
    """Symmetric PSD square root via ``eigh``: returns ``(root, eigvals, eigvecs)`` (eigvals clamped at 0).

    ``ValueError`` when ``cov`` is not symmetric or has a clearly negative eigenvalue.
    """
    cov = as_matrix(cov, name, square=True)
    scale = cov.abs().amax().clamp_min(1.0)
    if bool(((cov - mT(cov)).abs() > 1e-10 * scale).any()):
        raise ValueError(f"{name} must be symmetric")
    lam, U = torch.linalg.eigh(sym(cov))
    if bool((lam < -1e-10 * scale).any()):
        low = float(lam.min())
        raise ValueError(f"{name} must be positive semi-definite (smallest eigenvalue {low:.3g})")
    lam = lam.clamp_min(0.0)
    root = (U * lam.sqrt().unsqueeze(-2)) @ mT(U)
    return root, lam, U


def check_sigma(sigma, name: str = "sigma_y", *, positive: bool = False) -> float:
    """A noise level: a finite float ``>= 0`` (``> 0`` when ``positive``)."""
    s = as_float(sigma, name)
    if s < 0 or (positive and s == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {s}")
    return s


def check_pos_int(x, name: str, *, minimum: int = 1) -> int:
    """An ``int >= minimum`` (any integer type, including 0-d integer tensors)."""
    try:
        if isinstance(x, bool):
            raise TypeError
        x = operator.index(x)
    except TypeError:
        raise ValueError(f"{name} must be an int >= {minimum}, got {x!r}") from None
    if x < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {x}")
    return x


def comb_ratio(n1: int, r1: int, n2: int, r2: int) -> float:
    """``C(n1, r1) / C(n2, r2)`` exactly rounded (big-int arithmetic)."""
    return math.comb(n1, r1) / math.comb(n2, r2)


def draw_gaussian(k: int, batch: int | None, n: int | None, generator, mean=None, cov=None) -> Tensor:
    """Draws of ``N(mean, cov)`` in ``R^k`` shaped ``[(batch,) (n,) k]``; ``cov`` may be singular.

    ``mean`` is ``[k]`` or ``[batch, k]``; ``cov`` is ``[k, k]`` or ``[batch, k, k]``.
    """
    lead = [] if batch is None else [batch]
    if n is not None:
        lead.append(check_pos_int(n, "n"))
    xi = torch.randn((*lead, k), generator=rng(generator), dtype=torch.float64)
    if cov is not None:
        root, _, _ = sqrt_psd(cov, "cov")
        if root.shape[-1] != k:
            raise ValueError(f"cov must be [{k}, {k}], got {list(root.shape)}")
        if root.dim() == 3 and root.shape[0] != batch:
            raise ValueError(f"cov has instance batch {root.shape[0]}, expected {batch}")
        xi = matvec(root, xi, "z")
    if mean is not None:
        mu = as_tensor(mean, "mean")
        if mu.dim() == 0 or mu.dim() > 2 or mu.shape[-1] != k:
            raise ValueError(f"mean must be [{k}] or [B, {k}], got {list(mu.shape)}")
        if mu.dim() == 2 and mu.shape[0] != batch:
            raise ValueError(f"mean has instance batch {mu.shape[0]}, expected {batch}")
        xi = xi + align(mu, xi)
    return xi


def pinv_full_column(S: Tensor) -> tuple[Tensor, bool]:
    """``S^+ = (S^T S)^{-1} S^T``, returning ``S^T`` exactly when ``S`` is orthonormal."""
    k = S.shape[-1]
    gram = mT(S) @ S
    eye = torch.eye(k, dtype=S.dtype)
    if bool(((gram - eye).abs() <= 1e-12).all()):
        return mT(S).clone(), True
    return torch.linalg.solve(gram, mT(S)), False
