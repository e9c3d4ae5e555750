"""Exact Gaussian diffusion priors: in latent space, and in pixel space for subspace data.

Forward process (docs/theory.md §2): ``z_t = sqrt(ab) z0 + sqrt(1 - ab) eps`` with ``ab = alphas_cumprod[t]``
(diffusers semantics: 0-based ``t``, so theory's ``abar_t`` is ``alphas_cumprod[t - 1]``).

For ``z0 ~ N(mu0, Sigma0)`` everything is linear (docs/theory.md §5.1, §5.2); with
``C_t = ab Sigma0 + (1 - ab) I``:

* marginal     ``z_t ~ N(sqrt(ab) mu0, C_t)``
* score        ``-C_t^{-1} (z_t - sqrt(ab) mu0)``
* eps          ``(z_t - sqrt(ab) E[z0|z_t]) / sqrt(1 - ab) = sqrt(1 - ab) C_t^{-1} (z_t - sqrt(ab) mu0)``
* Tweedie      ``E[z0|z_t] = mu0 + sqrt(ab) Sigma0 C_t^{-1} (z_t - sqrt(ab) mu0)``,
  ``Cov(z0|z_t) = Sigma0 - ab Sigma0 C_t^{-1} Sigma0``.

All are evaluated in the eigenbasis of ``Sigma0`` (``Sigma0 = U diag(lam) U^T``), so a singular ``Sigma0``
is allowed and nothing is inverted except the positive ``ab lam + 1 - ab``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from linear_model._batch import (
    align,
    as_float,
    as_tensor,
    batch_of,
    check_pos_int,
    common_batch,
    draw_gaussian,
    matvec,
    mT,
    sqrt_psd,
)
from linear_model.autoencoder import check_basis
from psld.schedule import make_alphas_cumprod

__all__ = [
    "Gaussian",
    "GaussianLatentPrior",
    "PixelSubspacePrior",
    "ridge_gains",
    "pixel_tweedie_matrix",
    "check_alphas_cumprod",
]

Gain = Callable[[Tensor, float], Tensor]  # (eigenvalue of the data covariance, abar) -> gain


class Gaussian(NamedTuple):
    """A Gaussian ``N(mean, cov)``; unpacks as ``mean, cov = ...``."""

    mean: Tensor
    cov: Tensor


def check_alphas_cumprod(alphas_cumprod) -> Tensor:
    """A 1-D float64 ``alphas_cumprod`` with values in ``(0, 1)``; ``None`` gives the linear schedule."""
    if alphas_cumprod is None:
        return make_alphas_cumprod("linear")
    ac = as_tensor(alphas_cumprod, "alphas_cumprod")
    if ac.dim() != 1 or ac.numel() == 0:
        raise ValueError(f"alphas_cumprod must be a non-empty 1-D tensor, got shape {list(ac.shape)}")
    if bool(((ac <= 0) | (ac >= 1)).any()):
        raise ValueError("alphas_cumprod must lie in (0, 1)")
    return ac


def _alpha_at(ac: Tensor, t) -> float:
    try:
        ti = int(t)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"t must be an integer timestep, got {t!r}") from None
    if not 0 <= ti < ac.numel():
        raise ValueError(f"t must be in [0, {ac.numel() - 1}], got {ti}")
    return float(ac[ti])


# gains as functions of the data-covariance eigenvalue ``lam`` and ``ab``
def _g_tweedie(lam: Tensor, ab: float) -> Tensor:
    return ab**0.5 * lam / (ab * lam + 1.0 - ab)


def _g_score(lam: Tensor, ab: float) -> Tensor:
    return -1.0 / (ab * lam + 1.0 - ab)


def _g_eps(lam: Tensor, ab: float) -> Tensor:
    return (1.0 - ab) ** 0.5 / (ab * lam + 1.0 - ab)


def _g_post_var(lam: Tensor, ab: float) -> Tensor:
    return lam * (1.0 - ab) / (ab * lam + 1.0 - ab)


def _g_marginal(lam: Tensor, ab: float) -> Tensor:
    return ab * lam + 1.0 - ab


class GaussianLatentPrior:
    """Exact diffusion prior for ``z0 ~ N(mean, cov)`` (default ``N(0, I_k)``), float64.

    ``mean`` is ``[k]`` or ``[B, k]`` and ``cov`` ``[k, k]`` or ``[B, k, k]`` (PSD; may be singular).
    Implements ``psld.protocols.LatentPrior``; the default schedule is ``make_alphas_cumprod("linear")``.

    >>> prior = GaussianLatentPrior(k=3)
    >>> z = torch.ones(2, 3, dtype=torch.float64)
    >>> ab = float(prior.alphas_cumprod[10])
    >>> bool(torch.allclose(prior.eps(z, 10), (1 - ab) ** 0.5 * z))   # N(0, I): eps = sqrt(1-ab) z
    True
    """

    def __init__(
        self,
        mean: Tensor | None = None,
        cov: Tensor | None = None,
        *,
        k: int | None = None,
        alphas_cumprod: Tensor | None = None,
    ):
        self.alphas_cumprod = check_alphas_cumprod(alphas_cumprod)
        sizes = {}
        if mean is not None:
            mean = as_tensor(mean, "mean")
            if mean.dim() not in (1, 2) or mean.shape[-1] == 0:
                raise ValueError(f"mean must be [k] or [B, k], got shape {list(mean.shape)}")
            sizes["mean"] = mean.shape[-1]
        if cov is not None:
            _, lam, U = sqrt_psd(cov, "cov")
            sizes["cov"] = lam.shape[-1]
        if k is not None:
            sizes["k"] = check_pos_int(k, "k")
        if not sizes:
            raise ValueError("give k, mean or cov")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"k, mean and cov disagree on the latent dimension: {sizes}")
        self.k = next(iter(sizes.values()))
        self._lam, self._U = (lam, U) if cov is not None else (None, None)
        self.cov = torch.eye(self.k, dtype=torch.float64) if cov is None else as_tensor(cov, "cov")
        self.mean = torch.zeros(self.k, dtype=torch.float64) if mean is None else mean
        mean_as_matrix = self.mean.unsqueeze(-1) if self.mean.dim() == 2 else None
        self.batch = common_batch(cov=self.cov, mean=mean_as_matrix)

    # ------------------------------------------------------------------ helpers
    def alpha_bar(self, t) -> float:
        """``alphas_cumprod[t]``, validating ``t``."""
        return _alpha_at(self.alphas_cumprod, t)

    def _apply(self, v: Tensor, ab: float, gain: Gain) -> Tensor:
        """``U diag(gain(lam)) U^T v`` (just ``gain(1) v`` for ``Sigma0 = I``)."""
        if self._U is None:
            return gain(torch.ones((), dtype=torch.float64), ab).to(v) * v
        g = gain(self._lam, ab).to(v)
        w = matvec(mT(self._U), v, "z_t")
        return matvec(self._U, align(g, w) * w, "z_t")

    def _matrix(self, ab: float, gain: Gain) -> Tensor:
        if self._U is None:
            return gain(torch.ones((), dtype=torch.float64), ab) * torch.eye(self.k, dtype=torch.float64)
        return (self._U * gain(self._lam, ab).unsqueeze(-2)) @ mT(self._U)

    def _centered(self, z_t: Tensor, ab: float) -> Tensor:
        if not isinstance(z_t, Tensor):
            raise ValueError(f"z_t must be a torch.Tensor, got {type(z_t).__name__}")
        if z_t.dim() == 0 or z_t.shape[-1] != self.k:
            raise ValueError(f"z_t must have last dimension k={self.k}, got shape {list(z_t.shape)}")
        if self.batch is not None and (z_t.dim() < 2 or z_t.shape[0] != self.batch):
            raise ValueError(
                f"z_t must be [{self.batch}, ..., {self.k}] for a batched prior, got {list(z_t.shape)}"
            )
        return z_t - ab**0.5 * align(self.mean.to(z_t), z_t)

    # ------------------------------------------------------------------ the LatentPrior protocol
    def eps(self, z_t: Tensor, t: int) -> Tensor:
        """Exact ``eps = sqrt(1 - ab) C_t^{-1} (z_t - sqrt(ab) mu0)``, differentiable in ``z_t``."""
        ab = self.alpha_bar(t)
        return self._apply(self._centered(z_t, ab), ab, _g_eps)

    # ------------------------------------------------------------------ closed forms
    def score(self, z_t: Tensor, t: int) -> Tensor:
        """``grad log p_t(z_t) = -C_t^{-1} (z_t - sqrt(ab) mu0)``."""
        ab = self.alpha_bar(t)
        return self._apply(self._centered(z_t, ab), ab, _g_score)

    def tweedie_mean(self, z_t: Tensor, t: int) -> Tensor:
        """``E[z0 | z_t] = mu0 + W_t (z_t - sqrt(ab) mu0)`` with ``W_t = sqrt(ab) Sigma0 C_t^{-1}``."""
        ab = self.alpha_bar(t)
        out = self._apply(self._centered(z_t, ab), ab, _g_tweedie)
        return out + align(self.mean.to(out), out)

    def tweedie_matrix(self, t: int) -> Tensor:
        """``W_t = sqrt(ab) Sigma0 (ab Sigma0 + (1 - ab) I)^{-1}`` (``sqrt(ab) I`` for ``Sigma0 = I``)."""
        return self._matrix(self.alpha_bar(t), _g_tweedie)

    def tweedie_cov(self, t: int) -> Tensor:
        """``Cov(z0 | z_t) = (Sigma0^{-1} + ab/(1 - ab) I)^{-1}`` (``(1 - ab) I`` for ``Sigma0 = I``)."""
        return self._matrix(self.alpha_bar(t), _g_post_var)

    def marginal(self, t: int) -> Gaussian:
        """``z_t ~ N(sqrt(ab) mu0, ab Sigma0 + (1 - ab) I)``."""
        ab = self.alpha_bar(t)
        return Gaussian(ab**0.5 * self.mean, self._matrix(ab, _g_marginal))

    def sample(self, n: int | None = None, generator=None) -> Tensor:
        """Draws of ``z0`` shaped ``[(B,) (n,) k]`` (``n=None``: one per instance)."""
        return draw_gaussian(self.k, self.batch, n, generator, self.mean, self.cov)

    def __repr__(self) -> str:
        return f"GaussianLatentPrior(k={self.k}, batch={self.batch}, T={self.alphas_cumprod.numel()})"


def ridge_gains(alpha: float, ridge: float) -> tuple[float, float]:
    """Pixel ridge Tweedie gains (docs/theory.md §5.2) for ``Sigma_x = S S^T + ridge I``, orthonormal ``S``:

    ``g_in = sqrt(a)(1 + e)/(a(1 + e) + 1 - a)`` on ``range(S)``, ``g_off = sqrt(a) e/(a e + 1 - a)`` off it.

    >>> ridge_gains(0.25, 0.0)
    (0.5, 0.0)
    """
    a = as_float(alpha, "alpha")
    e = as_float(ridge, "ridge")
    if not 0 < a <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {a}")
    if e < 0:
        raise ValueError(f"ridge must be >= 0, got {e}")
    g_in = a**0.5 * (1 + e) / (a * (1 + e) + 1 - a)
    g_off = a**0.5 * e / (a * e + 1 - a) if e > 0 else 0.0
    return g_in, g_off


class PixelSubspacePrior:
    """Exact pixel-space diffusion prior of ``x0 = S z0``, ``z0 ~ N(0, I_k)`` (plus ``ridge * I``).

    ``Sigma_x = S S^T + ridge I`` with ``S = U diag(s) V^T``; every map is ``U diag(g(s^2 + ridge)) U^T x +
    g(ridge) (I - U U^T) x`` for the gain ``g`` of the quantity. With ``ridge = 0`` and orthonormal ``S`` the
    Tweedie mean is the closed-form projection ``sqrt(ab) P x_t`` (docs/theory.md §5.2; the singular
    covariance is never inverted) and the score is ``-P x - (I - P) x/(1 - ab)`` (docs/theory.md §5.1).
    Implements ``psld.protocols.LatentPrior`` (pixel DPS uses it with identity encoder/decoder).

    >>> from linear_model.autoencoder import random_subspace
    >>> S = random_subspace(5, 2, seed=0)
    >>> prior = PixelSubspacePrior(S)
    >>> x = torch.randn(3, 5, dtype=torch.float64)
    >>> ab = float(prior.alphas_cumprod[7])
    >>> bool(torch.allclose(prior.tweedie_mean(x, 7), ab**0.5 * x @ (S @ S.T)))
    True
    """

    def __init__(self, S: Tensor, alphas_cumprod: Tensor | None = None, ridge: float = 0.0):
        self.S = check_basis(S, "S")
        self.alphas_cumprod = check_alphas_cumprod(alphas_cumprod)
        self.ridge = as_float(ridge, "ridge")
        if self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        k = self.S.shape[-1]
        eye = torch.eye(k, dtype=torch.float64)
        self.orthonormal = bool(((mT(self.S) @ self.S - eye).abs() <= 1e-12).all())
        if self.orthonormal:
            self._U, sv = self.S, torch.ones(self.S.shape[:-2] + (k,), dtype=torch.float64)
        else:
            self._U, sv, _ = torch.linalg.svd(self.S, full_matrices=False)
        self._lam_in = sv**2 + self.ridge
        self.P = self._U @ mT(self._U)

    @property
    def d(self) -> int:
        return self.S.shape[-2]

    @property
    def batch(self) -> int | None:
        return batch_of(self.S)

    @property
    def cov(self) -> Tensor:
        """``Sigma_x = S S^T + ridge I`` ``[d, d]``."""
        return self.S @ mT(self.S) + self.ridge * torch.eye(self.d, dtype=torch.float64)

    def alpha_bar(self, t) -> float:
        """``alphas_cumprod[t]``, validating ``t``."""
        return _alpha_at(self.alphas_cumprod, t)

    def _apply(self, x: Tensor, ab: float, gain: Gain) -> Tensor:
        if not isinstance(x, Tensor):
            raise ValueError(f"x_t must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() == 0 or x.shape[-1] != self.d:
            raise ValueError(f"x_t must have last dimension d={self.d}, got shape {list(x.shape)}")
        c = matvec(mT(self._U), x, "x_t")
        if self.orthonormal and self.ridge == 0.0 and gain is _g_tweedie:
            g_in = torch.full_like(self._lam_in, ab**0.5)  # the exact projector sqrt(ab) P
        else:
            g_in = gain(self._lam_in, ab)
        inside = matvec(self._U, align(g_in.to(x), c) * c, "x_t")
        g_off = float(gain(torch.tensor(self.ridge, dtype=torch.float64), ab))
        if g_off == 0.0:
            return inside
        return inside + g_off * (x - matvec(self._U, c, "x_t"))

    def eps(self, x_t: Tensor, t: int) -> Tensor:
        """``sqrt(1 - ab) (ab Sigma_x + (1 - ab) I)^{-1} x_t`` (differentiable in ``x_t``)."""
        ab = self.alpha_bar(t)
        return self._apply(x_t, ab, _g_eps)

    def score(self, x_t: Tensor, t: int) -> Tensor:
        """``-(ab Sigma_x + (1 - ab) I)^{-1} x_t``; ridge 0, orthonormal S: ``-P x - (I - P) x/(1 - ab)``."""
        return self._apply(x_t, self.alpha_bar(t), _g_score)

    def tweedie_mean(self, x_t: Tensor, t: int) -> Tensor:
        """``E[x0 | x_t] = V_t x_t``; ``sqrt(ab) P x_t`` for ridge 0 and orthonormal ``S``."""
        return self._apply(x_t, self.alpha_bar(t), _g_tweedie)

    def tweedie_matrix(self, t: int) -> Tensor:
        """Dense ``V_t`` ``[d, d]`` (see :func:`pixel_tweedie_matrix`)."""
        return pixel_tweedie_matrix(self.S, self.alpha_bar(t), self.ridge)

    def __repr__(self) -> str:
        return f"PixelSubspacePrior(d={self.d}, k={self.S.shape[-1]}, ridge={self.ridge}, batch={self.batch})"


def pixel_tweedie_matrix(S: Tensor, alpha: float, ridge: float = 0.0) -> Tensor:
    """Dense pixel Tweedie matrix ``V = sqrt(a) Sigma_x (a Sigma_x + (1 - a) I)^{-1}``, ``Sigma_x = S S^T +
    ridge I``, built from the SVD of ``S`` (so ``a = 1``, ``ridge = 0`` is fine). For orthonormal ``S``:
    ``V = g_in P + g_off (I - P)`` with :func:`ridge_gains`.
    """
    S = check_basis(S, "S")
    a = as_float(alpha, "alpha")
    if not 0 < a <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {a}")
    e = as_float(ridge, "ridge")
    if e < 0:
        raise ValueError(f"ridge must be >= 0, got {e}")
    U, sv, _ = torch.linalg.svd(S, full_matrices=False)
    lam = sv**2 + e
    g_in = a**0.5 * lam / (a * lam + 1 - a)
    g_off = a**0.5 * e / (a * e + 1 - a) if e > 0 else 0.0
    P = U @ mT(U)
    eye = torch.eye(S.shape[-2], dtype=torch.float64)
    return (U * g_in.unsqueeze(-2)) @ mT(U) + g_off * (eye - P)
