"""Exact posteriors of the linear-Gaussian model, least squares, and the exact posterior sampler.

Model: ``z0 ~ N(mu0, Sigma0)``, ``x0 = S z0``, ``y = A x0 + sigma_y n``; ``B = A S``, ``M = B^T B``.
Posterior (docs/theory.md §5.3)::

    Sigma_post = (Sigma0^{-1} + M/sigma_y^2)^{-1}
    mu_post    = Sigma_post (B^T y/sigma_y^2 + Sigma0^{-1} mu0)
    x0 | y ~ N(S mu_post, S Sigma_post S^T)

It is computed without inverting ``Sigma0``: write ``z = mu0 + L u`` with ``L = Sigma0^{1/2}`` and
``u ~ N(0, I)``, take the SVD of ``B~ = B L`` (``B~^T B~ = V diag(s) V^T``); then ``u | y`` has, along
``v_j``, variance ``sigma^2/(sigma^2 + s_j)`` and mean ``(v_j^T B~^T r)/(sigma^2 + s_j)``, ``r = y - B mu0``.
With ``sigma_y = 0`` the directions with ``s_j > 0`` are pinned (variance 0, mean = least squares, i.e.
the pseudo-inverse) and those in ``null(B~)`` keep the prior: this is the ``sigma_y -> 0`` limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from linear_model._batch import (
    align,
    as_generator,
    as_matrix,
    as_tensor,
    check_pos_int,
    check_sigma,
    common_batch,
    matmul,
    matvec,
    mT,
    rank_tol,
    sqrt_psd,
    sym,
)
from linear_model.prior import Gaussian, check_alphas_cumprod

__all__ = ["ExactPosterior", "exact_posterior", "least_squares", "oracle_sample", "ridge_posterior"]


@dataclass(frozen=True)
class ExactPosterior:
    """``z0 | y ~ N(mean, cov)`` and ``x0 | y ~ N(pixel_mean, pixel_cov)``;
    ``rank = rank(B Sigma0^{1/2})``."""

    mean: Tensor
    cov: Tensor
    pixel_mean: Tensor
    pixel_cov: Tensor
    rank: Tensor

    @property
    def latent(self) -> Gaussian:
        return Gaussian(self.mean, self.cov)

    @property
    def pixel(self) -> Gaussian:
        return Gaussian(self.pixel_mean, self.pixel_cov)


@dataclass(frozen=True)
class _Whitened:
    """Prior whitening ``z = mu0 + L u`` and the SVD of ``B L`` (right vectors ``V``, ``s`` padded to k)."""

    mu0: Tensor | None
    L: Tensor | None
    V: Tensor  # [(B,) k, k]
    s: Tensor  # [(B,) k]  squared singular values, zero-padded
    pinned: Tensor  # [(B,) k] bool: s_j numerically > 0
    Bt: Tensor  # B L


def _whiten(B: Tensor, mean, cov) -> _Whitened:
    k = B.shape[-1]
    L = None
    if cov is not None:
        L, _, _ = sqrt_psd(cov, "cov")
        if L.shape[-1] != k:
            raise ValueError(f"cov must be [{k}, {k}], got {list(L.shape)}")
        common_batch(A_S=B, cov=L)
    mu0 = None
    if mean is not None:
        mu0 = as_tensor(mean, "mean")
        if mu0.dim() not in (1, 2) or mu0.shape[-1] != k:
            raise ValueError(f"mean must be [{k}] or [B, {k}], got {list(mu0.shape)}")
    Bt = B if L is None else B @ L
    l = Bt.shape[-2]
    _, sv, Vh = torch.linalg.svd(Bt, full_matrices=True)
    pinned = sv > rank_tol(sv, l, k)
    pad = k - sv.shape[-1]
    if pad > 0:
        sv = torch.cat([sv, sv.new_zeros(*sv.shape[:-1], pad)], -1)
        pinned = torch.cat([pinned, pinned.new_zeros(*pinned.shape[:-1], pad)], -1)
    return _Whitened(mu0, L, mT(Vh), sv**2, pinned, Bt)


def _unwhiten_vec(w: _Whitened, u: Tensor) -> Tensor:
    z = u if w.L is None else matvec(w.L, u, "z")
    return z if w.mu0 is None else z + align(w.mu0, z)


def _residual(B: Tensor, w: _Whitened, y: Tensor) -> Tensor:
    y = as_tensor(y, "y")
    if y.dim() == 0 or y.shape[-1] != B.shape[-2]:
        raise ValueError(f"y must have last dimension l={B.shape[-2]}, got shape {list(y.shape)}")
    if w.mu0 is None:
        return y
    Bmu = matvec(B, w.mu0 if B.dim() == 2 or w.mu0.dim() == 2 else w.mu0.expand(B.shape[0], -1), "mean")
    return y - align(Bmu, y)


def _condition(B: Tensor, y, sigma: float, mean, cov) -> tuple[Tensor, Tensor, Tensor]:
    """Posterior ``(mean, cov, rank)`` of ``z ~ N(mean, cov)`` given ``y = B z + sigma n``."""
    w = _whiten(B, mean, cov)
    r = _residual(B, w, y)
    c = matvec(mT(w.V), matvec(mT(w.Bt), r, "y"), "y")  # V^T B~^T r
    if sigma > 0:
        gain = 1.0 / (w.s + sigma**2)
        var = sigma**2 / (w.s + sigma**2)
    else:
        gain = torch.where(w.pinned, 1.0 / torch.where(w.pinned, w.s, 1.0), 0.0)
        var = torch.where(w.pinned, 0.0, 1.0)
    u_mean = matvec(w.V, align(gain, c) * c, "y")
    u_cov = (w.V * var.unsqueeze(-2)) @ mT(w.V)
    mean_z = _unwhiten_vec(w, u_mean)
    cov_z = u_cov if w.L is None else w.L @ u_cov @ w.L
    return mean_z, sym(cov_z), w.pinned.sum(-1)


def exact_posterior(
    A: Tensor, S: Tensor, y: Tensor, sigma_y: float, mean: Tensor | None = None, cov: Tensor | None = None
) -> ExactPosterior:
    """Exact ``p(z0 | y)`` and ``p(x0 | y)`` for prior ``N(mean, cov)`` (default ``N(0, I_k)``),
    docs/theory.md §5.3.

    ``sigma_y = 0`` is the noiseless limit: with ``rank(AS) = k`` the covariance is 0 and the mean is
    ``z_LS``; otherwise the prior survives on ``null(AS)``. ``y`` is ``[..., l]`` (``[B, ..., l]`` when a
    matrix is batched).

    >>> import torch
    >>> A, S = torch.eye(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64)
    >>> post = exact_posterior(A, S, torch.tensor([2.0, 0.0], dtype=torch.float64), sigma_y=1.0)
    >>> post.mean.tolist(), torch.diagonal(post.cov).tolist()
    ([1.0, 0.0], [0.5, 0.5])
    """
    A = as_matrix(A, "A", dims="l, d")
    S = as_matrix(S, "S", dims="d, k")
    sigma = check_sigma(sigma_y, "sigma_y")
    B = matmul(A, S, "A", "S")
    m, c, rank = _condition(B, y, sigma, mean, cov)
    return ExactPosterior(m, c, matvec(S, m, "y"), sym(S @ c @ mT(S)), rank)


def least_squares(A: Tensor, S: Tensor, y: Tensor) -> Tensor:
    """``z_LS = M^{-1} B^T y = B^+ y`` (``B = AS``), the fixed point of noisy LDPS/PSLD (T5).

    Needs ``rank(AS) = k`` (``ValueError`` naming ``A`` otherwise). Computed from the SVD of ``B``.
    """
    A = as_matrix(A, "A", dims="l, d")
    S = as_matrix(S, "S", dims="d, k")
    B = matmul(A, S, "A", "S")
    l, k = B.shape[-2:]
    U, sv, Vh = torch.linalg.svd(B, full_matrices=False)
    rank = (sv > rank_tol(sv, l, k)).sum(-1)
    if bool((rank < k).any()):
        raise ValueError(
            f"A S must have full column rank k={k} for least squares (needs l >= k), "
            f"got rank {int(rank.min())}; check A"
        )
    B_pinv = (mT(Vh) / sv.unsqueeze(-2)) @ mT(U)
    y = as_tensor(y, "y")
    return matvec(B_pinv, y, "y")


def oracle_sample(
    A: Tensor,
    S: Tensor,
    y: Tensor,
    sigma_y: float,
    alphas_cumprod: Tensor | None,
    n: int,
    generator: int | torch.Generator | None = None,
    *,
    mean: Tensor | None = None,
    cov: Tensor | None = None,
) -> Tensor:
    """Exact draws of ``z0 | y`` by the exact reverse kernel of docs/theory.md §5.5, over all ``T`` steps.

    For the prior ``N(0, I)`` (other priors are whitened first, ``z = mean + cov^{1/2} u``), with
    ``ab_0 = 1``, ``beta_t = 1 - ab_t/ab_{t-1}``::

        z_T ~ N(sqrt(ab_T) mu_post, ab_T Sigma_post + (1 - ab_T) I)
        C_t = (I/(1 - ab_t) + M/sigma_y^2)^{-1},  m_t = C_t (sqrt(ab_t) z_t/(1 - ab_t) + B^T y/sigma_y^2)
        z_{t-1} ~ N(c1_t m_t + c2_t z_t, beta~_t I + c1_t^2 C_t)

    with DDPM's ``c1_t, c2_t, beta~_t``. Each step is an exact marginal, so the output is exact for any
    schedule. Runs in the eigenbasis of ``M`` (all covariances diagonal there). Needs ``sigma_y > 0``.
    Returns ``[..., n, k]`` where ``...`` is ``y.shape[:-1]``.
    """
    A = as_matrix(A, "A", dims="l, d")
    S = as_matrix(S, "S", dims="d, k")
    sigma = check_sigma(sigma_y, "sigma_y", positive=True)
    ac = check_alphas_cumprod(alphas_cumprod)
    n = check_pos_int(n, "n")
    g = as_generator(generator) if generator is not None else None
    B = matmul(A, S, "A", "S")
    w = _whiten(B, mean, cov)
    r = _residual(B, w, y)
    b = matvec(mT(w.V), matvec(mT(w.Bt), r, "y"), "y") / sigma**2  # V^T B~^T r / sigma^2, [..., k]
    b = b.unsqueeze(-2)  # [..., 1, k]
    s = align(w.s, b) / sigma**2  # likelihood precision per direction
    post_var = 1.0 / (1.0 + s)
    post_mean = post_var * b
    shape = (*b.shape[:-2], n, b.shape[-1])

    def noise() -> Tensor:
        return torch.randn(shape, generator=g, dtype=torch.float64)

    T = ac.numel()
    a_T = float(ac[-1])
    v = a_T**0.5 * post_mean + (a_T * post_var + 1.0 - a_T).sqrt() * noise()
    for t in range(T, 0, -1):
        a = float(ac[t - 1])
        ap = float(ac[t - 2]) if t >= 2 else 1.0
        beta = 1.0 - a / ap
        c1 = ap**0.5 * beta / (1.0 - a)
        c2 = (a / ap) ** 0.5 * (1.0 - ap) / (1.0 - a)
        beta_tilde = (1.0 - ap) * beta / (1.0 - a)
        C = 1.0 / (1.0 / (1.0 - a) + s)
        m = C * (a**0.5 * v / (1.0 - a) + b)
        v = c1 * m + c2 * v + (beta_tilde + c1**2 * C).sqrt() * noise()
    return _unwhiten_vec(w, matvec(w.V, v, "y"))


def ridge_posterior(A: Tensor, Sigma_x: Tensor, y: Tensor, sigma_y: float) -> Gaussian:
    """Pixel posterior under the ridge prior ``x0 ~ N(0, Sigma_x)`` (docs/theory.md §5.3, ridge target)::

        Cov = (Sigma_x^{-1} + A^T A/sigma_y^2)^{-1},   mean = Cov A^T y/sigma_y^2

    computed in the whitened form (no inverse of ``Sigma_x``); ``sigma_y = 0`` gives the noiseless limit.
    """
    A = as_matrix(A, "A", dims="l, d")
    Sigma_x = as_matrix(Sigma_x, "Sigma_x", square=True)
    if Sigma_x.shape[-1] != A.shape[-1]:
        d = A.shape[-1]
        raise ValueError(f"Sigma_x must be [{d}, {d}] to match A, got {list(Sigma_x.shape)}")
    sigma = check_sigma(sigma_y, "sigma_y")
    m, c, _ = _condition(A, y, sigma, None, Sigma_x)
    return Gaussian(m, c)
