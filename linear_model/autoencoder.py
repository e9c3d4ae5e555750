"""Linear autoencoders for the subspace model ``x0 = S z0`` (docs/theory.md A1, A3, T8).

* :class:`SubspaceAutoencoder`: encoder ``E = S^+`` (``= S^T`` for orthonormal ``S``), decoder ``D = S``,
  so ``D E S = S`` and ``E D = I_k``.
* :class:`OvercompleteAutoencoder`: latent of size ``p = k + m`` with ``E = [S^+; 0]`` and
  ``D = [S, B_x]``, ``B_x = (I - P) G``: still ``D E S = S`` but ``E D = diag(I_k, 0) != I_p`` (T8).
* :class:`LinearAutoencoder`: any pair of matrices ``(E, D)`` (e.g. ``E = S^T + N`` with ``N S = 0``).

Every matrix may carry a leading instance batch (``S`` ``[B, d, k]``); vectors then have the instance axis
first (``z`` ``[B, k]`` or ``[B, n, k]``) and instance ``b`` uses ``S[b]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from linear_model._batch import (
    as_generator,
    as_matrix,
    batch_of,
    check_pos_int,
    draw_gaussian,
    matvec,
    pinv_full_column,
    rank_tol,
)

__all__ = [
    "LinearMap",
    "LinearAutoencoder",
    "SubspaceAutoencoder",
    "OvercompleteAutoencoder",
    "random_subspace",
    "coordinate_basis",
    "check_basis",
]

Seed = int | torch.Generator | None


class LinearMap:
    """The callable ``v -> matrix @ v`` (batched), usable as a ``psld`` ``Encoder`` or ``Decoder``.

    >>> f = LinearMap(torch.eye(2, dtype=torch.float64) * 3)
    >>> f(torch.ones(1, 2, dtype=torch.float64)).tolist()
    [[3.0, 3.0]]
    """

    def __init__(self, matrix: Tensor, arg: str = "x"):
        self.matrix = as_matrix(matrix, "matrix")
        self.arg = arg

    @property
    def in_dim(self) -> int:
        return self.matrix.shape[-1]

    @property
    def out_dim(self) -> int:
        return self.matrix.shape[-2]

    def __call__(self, v: Tensor) -> Tensor:
        return matvec(self.matrix, v, self.arg)

    def sample(self, v: Tensor, generator: torch.Generator | list | None = None) -> Tensor:
        """Deterministic map: the "stochastic" encoding of a linear encoder is its mean."""
        return self(v)

    def __repr__(self) -> str:
        return f"LinearMap(shape={list(self.matrix.shape)})"


def random_subspace(d: int, k: int, *, seed: Seed = 0, batch: int | None = None) -> Tensor:
    """Orthonormal basis ``S`` ``[d, k]`` (or ``[batch, d, k]``): the Q factor of ``G = randn(d, k)``.

    ``G`` is drawn in float64 from the generator; signs are fixed so that ``R = S^T G`` has a positive
    diagonal, which makes ``S`` a deterministic function of the seed.

    >>> S = random_subspace(5, 2, seed=1)
    >>> bool(torch.allclose(S.T @ S, torch.eye(2, dtype=torch.float64)))
    True
    """
    d = check_pos_int(d, "d")
    k = check_pos_int(k, "k")
    if k > d:
        raise ValueError(f"k must be <= d, got k={k} > d={d}")
    shape = (d, k) if batch is None else (check_pos_int(batch, "batch"), d, k)
    G = torch.randn(shape, generator=as_generator(seed), dtype=torch.float64)
    Q, R = torch.linalg.qr(G)
    sign = torch.sign(torch.diagonal(R, dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return Q * sign.unsqueeze(-2)


def coordinate_basis(
    d: int, k: int, *, seed: Seed = 0, support: Tensor | None = None, batch: int | None = None
) -> Tensor:
    """Coordinate subspace ``S = I_d[:, support]`` with a random sorted ``support`` of size ``k`` (T9).

    >>> coordinate_basis(4, 2, support=torch.tensor([0, 3])).T.tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    """
    d = check_pos_int(d, "d")
    k = check_pos_int(k, "k")
    if k > d:
        raise ValueError(f"k must be <= d, got k={k} > d={d}")
    eye = torch.eye(d, dtype=torch.float64)
    if support is not None:
        idx = torch.as_tensor(support, dtype=torch.long)
        if idx.shape != (k,) or len(set(idx.tolist())) != k or int(idx.min()) < 0 or int(idx.max()) >= d:
            raise ValueError(f"support must hold {k} distinct indices in [0, {d}), got {idx.tolist()}")
        if batch is not None:
            raise ValueError("batch must be None when support is given")
        return eye[:, idx]
    g = as_generator(seed)
    n = 1 if batch is None else check_pos_int(batch, "batch")
    out = torch.stack([eye[:, torch.randperm(d, generator=g)[:k].sort().values] for _ in range(n)])
    return out[0] if batch is None else out


def check_basis(S, name: str = "S") -> Tensor:
    """Validate a data-subspace basis: ``[d, k]`` or ``[B, d, k]``, ``k <= d``, full column rank."""
    S = as_matrix(S, name, dims="d, k")
    d, k = S.shape[-2:]
    if k > d:
        raise ValueError(f"{name} has k={k} columns but only d={d} rows; need k <= d")
    sv = torch.linalg.svdvals(S)
    rank = (sv > rank_tol(sv, d, k)).sum(-1)
    if bool((rank < k).any()):
        raise ValueError(f"{name} must have full column rank k={k}, got rank {int(rank.min())}")
    return S


class LinearAutoencoder:
    """A linear encoder ``E`` ``[p, d]`` and decoder ``D`` ``[d, p]`` (optionally instance-batched).

    ``encoder``/``decoder`` are callables (``psld`` ``Encoder``/``Decoder``); ``encode``/``decode`` are the
    same maps as methods.
    """

    def __init__(self, E: Tensor, D: Tensor):
        E = as_matrix(E, "E")
        D = as_matrix(D, "D")
        if E.shape[-1] != D.shape[-2] or E.shape[-2] != D.shape[-1]:
            raise ValueError(f"E [p, d] and D [d, p] do not match: E {list(E.shape)}, D {list(D.shape)}")
        if batch_of(E) is not None and batch_of(D) is not None and batch_of(E) != batch_of(D):
            raise ValueError(f"E and D batch sizes differ: {E.shape[0]} and {D.shape[0]}")
        self.E = E
        self.D = D
        self.encoder = LinearMap(E, "x")
        self.decoder = LinearMap(D, "z")

    @property
    def d(self) -> int:
        """Pixel dimension."""
        return self.D.shape[-2]

    @property
    def p(self) -> int:
        """Latent dimension."""
        return self.D.shape[-1]

    @property
    def batch(self) -> int | None:
        """Instance batch size, or ``None``."""
        return batch_of(self.D) if batch_of(self.D) is not None else batch_of(self.E)

    def encode(self, x: Tensor) -> Tensor:
        """``E x``."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """``D z``."""
        return self.decoder(z)


class SubspaceAutoencoder(LinearAutoencoder):
    """Encoder ``S^+`` and decoder ``S`` for the data subspace ``range(S)``.

    Either pass ``S`` (``[d, k]`` or ``[B, d, k]``, full column rank) or ``d`` and ``k`` to draw an
    orthonormal ``S`` with :func:`random_subspace` (``batch`` instances if given).
    ``P = S S^+`` is the orthogonal projector onto the subspace.

    >>> ae = SubspaceAutoencoder(d=6, k=2, seed=0)
    >>> z = torch.randn(3, 2, dtype=torch.float64)
    >>> bool(torch.allclose(ae.encode(ae.decode(z)), z))
    True
    """

    def __init__(
        self,
        S: Tensor | None = None,
        *,
        d: int | None = None,
        k: int | None = None,
        seed: Seed = 0,
        batch: int | None = None,
    ):
        if S is None:
            if d is None or k is None:
                raise ValueError("give S, or both d and k")
            S = random_subspace(d, k, seed=seed, batch=batch)
        else:
            S = check_basis(S, "S")
            if d is not None and d != S.shape[-2]:
                raise ValueError(f"d={d} does not match S with {S.shape[-2]} rows")
            if k is not None and k != S.shape[-1]:
                raise ValueError(f"k={k} does not match S with {S.shape[-1]} columns")
        self.S = S
        S_pinv, self.orthonormal = pinv_full_column(S)
        self.P = S @ S_pinv
        super().__init__(S_pinv, S)

    @property
    def k(self) -> int:
        """Latent (subspace) dimension."""
        return self.S.shape[-1]

    def sample(
        self,
        n: int | None = None,
        generator: Seed = None,
        *,
        mean: Tensor | None = None,
        cov: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``z0 ~ N(mean, cov)`` (default ``N(0, I_k)``) and return ``(z0, x0 = S z0)``.

        Shapes: ``n=None`` gives one draw per instance (``[k]`` or ``[B, k]``); an int ``n`` adds a
        sample axis before the last (``[n, k]`` or ``[B, n, k]``).
        """
        z0 = draw_gaussian(self.k, self.batch, n, generator, mean, cov)
        return z0, self.decode(z0)


class OvercompleteAutoencoder(LinearAutoencoder):
    """Over-complete linear latent of size ``p = k + m`` (docs/theory.md T8).

    ``E = [S^+; 0_{m x d}]``, ``D = [S, B_x]`` with ``B_x = (I - P) G`` for a Gaussian ``G`` ``[d, m]``
    with entries ``N(0, scale^2)``; the default ``scale = 1/sqrt(d)`` gives the extra decoder columns
    about unit norm, the scale of the data columns (with unit-variance ``G`` their curvature ~ d limits
    the measurement step so much that no method recovers, even with a tight prior).
    Then ``D E S = S`` (perfect reconstruction of the data) while ``E D = diag(I_k, 0) != I_p``.
    ``S`` is drawn first from ``seed`` (when not given), then ``G`` from the same generator.

    >>> ae = OvercompleteAutoencoder(d=8, k=2, m=3, seed=0)
    >>> bool(torch.allclose(ae.D @ ae.E @ ae.S, ae.S)), ae.p
    (True, 5)
    """

    def __init__(
        self,
        S: Tensor | None = None,
        *,
        m: int,
        d: int | None = None,
        k: int | None = None,
        seed: Seed = 0,
        batch: int | None = None,
        scale: float | None = None,
    ):
        g = as_generator(seed)
        base = SubspaceAutoencoder(S, d=d, k=k, seed=g, batch=batch)
        m = check_pos_int(m, "m", minimum=0)
        dd = base.d
        scale = dd**-0.5 if scale is None else float(scale)
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale!r}")
        gshape = (dd, m) if base.batch is None else (base.batch, dd, m)
        G = scale * torch.randn(gshape, generator=g, dtype=torch.float64)
        eye = torch.eye(dd, dtype=torch.float64)
        self.S = base.S
        self.P = base.P
        self.k = base.k
        self.m = m
        self.B_x = (eye - base.P) @ G
        zeros = torch.zeros((*base.E.shape[:-2], m, dd), dtype=torch.float64)
        super().__init__(torch.cat([base.E, zeros], dim=-2), torch.cat([base.S, self.B_x], dim=-1))

    def leaky_cov(self, eps_z: float) -> Tensor:
        """Leaky latent prior covariance ``diag(I_k, eps_z I_m)`` ``[p, p]``."""
        if eps_z < 0:
            raise ValueError(f"eps_z must be >= 0, got {eps_z}")
        diag = torch.cat([torch.ones(self.k), torch.full((self.m,), float(eps_z))]).to(torch.float64)
        return torch.diag(diag)
