"""Gaussian mixtures with closed-form diffusion quantities, and their exact linear-Gaussian posterior.

A mixture ``p(x) = sum_j w_j N(m_j, C_j)`` stores each covariance as "identity plus a low-rank change":
``C_j = I + U_j (diag(lam_j) - I) U_j^T`` with ``U_j`` ``[d, r]`` orthonormal columns (``r = 0``: ``C_j = I``,
the MCGdiff benchmark; ``r = d``: any covariance). Every map below is then ``O(d r)`` per point and component.

Forward process (diffusers semantics, as :mod:`linear_model.prior`): ``x_t = sqrt(ab) x0 + sqrt(1 - ab) eps``.
Because a mixture of Gaussians pushed through an affine Gaussian kernel stays one (docs/theory.md §10.1)::

    p_t(x)   = sum_j w_j N(x; sqrt(ab) m_j, C_j^t)
    C_j^t    = ab C_j + (1 - ab) I = I + U_j (diag(ab lam_j + 1 - ab) - I) U_j^T
    score    = sum_j r_j(x) (-(C_j^t)^{-1} (x - sqrt(ab) m_j)),   r_j(x) = w_j N_j^t(x) / p_t(x)
    Tweedie  E[x0 | x_t] = sum_j r_j(x) (m_j + sqrt(ab) C_j (C_j^t)^{-1} (x - sqrt(ab) m_j))
    eps      = -sqrt(1 - ab) score

and the posterior of ``y = B x + sigma n`` is the mixture of the per-component Gaussian posteriors with
weights ``w_j N(y; B m_j, B C_j B^T + sigma^2 I)`` renormalised (docs/theory.md §10.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from linear_model._batch import as_tensor, check_pos_int, check_sigma, rng
from linear_model.prior import _alpha_at, check_alphas_cumprod

__all__ = ["GaussianMixture", "GaussianMixtureLatentPrior", "mixture_posterior"]

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class GaussianMixture:
    """``sum_j weights[j] N(means[j], I + U[j] (diag(lam[j]) - I) U[j]^T)``; ``U = lam = None``: all ``I``.

    ``weights`` ``[K]`` (positive, sum 1), ``means`` ``[K, d]``, ``U`` ``[K, d, r]``, ``lam`` ``[K, r]``.

    >>> gm = GaussianMixture.isotropic(torch.tensor([0.25, 0.75]), torch.tensor([[0.0], [4.0]]))
    >>> round(float(gm.log_prob(torch.tensor([[0.0]])).exp()), 4)   # 0.25 N(0;0,1) + 0.75 N(0;4,1)
    0.0998
    """

    weights: Tensor
    means: Tensor
    U: Tensor | None = None
    lam: Tensor | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def isotropic(cls, weights, means) -> GaussianMixture:
        """Identity covariances (the MCGdiff benchmark's prior)."""
        w, m = _check_weights_means(weights, means)
        return cls(w, m)

    @classmethod
    def from_covs(cls, weights, means, covs) -> GaussianMixture:
        """Any PSD covariances ``covs`` ``[K, d, d]`` (or one ``[d, d]`` shared), by eigendecomposition."""
        w, m = _check_weights_means(weights, means)
        c = as_tensor(covs, "covs")
        if c.dim() == 2:
            c = c.expand(m.shape[0], -1, -1)
        if c.shape != (m.shape[0], m.shape[1], m.shape[1]):
            raise ValueError(
                f"covs must be [K, d, d] = {[m.shape[0], m.shape[1], m.shape[1]]}, got {list(c.shape)}"
            )
        if not torch.allclose(c, c.mT, atol=1e-10 * max(1.0, float(c.abs().max()))):
            raise ValueError("covs must be symmetric")
        lam, U = torch.linalg.eigh((c + c.mT) / 2)
        if bool((lam < -1e-10 * lam.abs().amax(-1, keepdim=True).clamp_min(1.0)).any()):
            raise ValueError("covs must be positive semi-definite")
        return cls(w, m, U, lam.clamp_min(0.0))

    # ------------------------------------------------------------------ properties
    @property
    def K(self) -> int:
        return self.means.shape[0]

    @property
    def d(self) -> int:
        return self.means.shape[1]

    @property
    def covs(self) -> Tensor:
        """Dense covariances ``[K, d, d]``."""
        eye = torch.eye(self.d, dtype=F64).expand(self.K, -1, -1)
        if self.U is None:
            return eye.clone()
        return eye + (self.U * (self.lam - 1.0).unsqueeze(-2)) @ self.U.mT

    def effective_modes(self) -> float:
        """``exp(H(w))``, the perplexity of the weights: 1 for one dominant mode, ``K`` for equal weights."""
        w = self.weights[self.weights > 0]
        return float(torch.exp(-(w * w.log()).sum()))

    # ------------------------------------------------------------------ transformations
    def noised(self, ab: float) -> GaussianMixture:
        """Law of ``sqrt(ab) x0 + sqrt(1 - ab) eps``: means ``sqrt(ab) m_j``, ``lam -> ab lam + 1 - ab``."""
        ab = float(ab)
        if not 0.0 < ab <= 1.0:
            raise ValueError(f"ab must be in (0, 1], got {ab}")
        lam = None if self.lam is None else ab * self.lam + (1.0 - ab)
        return GaussianMixture(self.weights, ab**0.5 * self.means, self.U, lam)

    # ------------------------------------------------------------------ densities
    def _proj(self, diff: Tensor) -> Tensor:
        """``U_j^T (x - m_j)`` ``[N, K, r]`` from ``diff`` ``[N, K, d]``."""
        return torch.einsum("nkd,kdr->nkr", diff, self.U)

    @property
    def _shared(self) -> bool:
        """All components share one ``U`` (an expanded view: the posterior of identity covariances)."""
        return self.U is not None and self.U.stride(0) == 0

    def _proj_x(self, x: Tensor) -> Tensor:
        """``U_j^T (x - m_j)`` ``[N, K, r]`` without forming ``x - m_j`` (shared ``U``: one projection)."""
        if self._shared:
            return (x @ self.U[0]).unsqueeze(1) - self.means @ self.U[0]
        return torch.einsum("nd,kdr->nkr", x, self.U) - torch.einsum("kd,kdr->kr", self.means, self.U)

    def _lift(self, c: Tensor) -> Tensor:
        """``sum_j U_j c_j`` ``[N, d]`` for ``c`` ``[N, K, r]``."""
        if self._shared:
            return c.sum(1) @ self.U[0].T
        return torch.einsum("kdr,nkr->nd", self.U, c)

    def component_log_prob(self, x: Tensor) -> Tensor:
        """``log N(x; m_j, C_j)`` ``[N, K]`` for ``x`` ``[N, d]`` (needs ``lam > 0``)."""
        x = self._check_x(x)
        sq = x.pow(2).sum(-1, keepdim=True) - 2 * x @ self.means.T + self.means.pow(2).sum(-1)
        quad, logdet = sq, torch.zeros(self.K, dtype=x.dtype)
        if self.U is not None:
            p = self._proj_x(x)
            quad = quad + (p.pow(2) * (1.0 / self.lam - 1.0)).sum(-1)
            logdet = self.lam.log().sum(-1)
        return -0.5 * (quad + logdet + self.d * LOG_2PI)

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` ``[N]``."""
        return torch.logsumexp(self.component_log_prob(x) + self.weights.log(), -1)

    def responsibilities(self, x: Tensor) -> Tensor:
        """``r_j(x) = w_j N_j(x) / p(x)`` ``[N, K]``."""
        return torch.softmax(self.component_log_prob(x) + self.weights.log(), -1)

    def score(self, x: Tensor) -> Tensor:
        """``grad log p(x) = -sum_j r_j C_j^{-1} (x - m_j)`` ``[N, d]``, differentiable in ``x``."""
        x = self._check_x(x)
        r = self.responsibilities(x)
        out = -(x - r @ self.means)
        if self.U is not None:
            out = out - self._lift(r.unsqueeze(-1) * self._proj_x(x) * (1.0 / self.lam - 1.0))
        return out

    def sample(self, n: int, generator=None, *, labels: bool = False):
        """``n`` exact draws ``[n, d]`` (and their component labels ``[n]`` with ``labels=True``)."""
        n = check_pos_int(n, "n")
        g = rng(generator)
        j = torch.multinomial(self.weights, n, replacement=True, generator=g)
        xi = torch.randn(n, self.d, generator=g, dtype=F64)
        x = self.means[j] + xi
        if self.U is not None:
            Uj = self.U[j]
            x = x + torch.einsum(
                "ndr,nr->nd", Uj, (self.lam[j].sqrt() - 1.0) * torch.einsum("ndr,nd->nr", Uj, xi)
            )
        return (x, j) if labels else x

    def _check_x(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[-1] != self.d:
            shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be [N, d={self.d}], got {shape}")
        return x


def _check_weights_means(weights, means) -> tuple[Tensor, Tensor]:
    w = as_tensor(weights, "weights")
    m = as_tensor(means, "means")
    if m.dim() != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"means must be [K, d], got shape {list(m.shape)}")
    if w.shape != (m.shape[0],):
        raise ValueError(f"weights must be [K] = [{m.shape[0]}], got shape {list(w.shape)}")
    if bool((w <= 0).any()) or abs(float(w.sum()) - 1.0) > 1e-9:
        raise ValueError("weights must be positive and sum to 1")
    return w / w.sum(), m


class GaussianMixtureLatentPrior:
    """Exact diffusion prior for ``z0 ~ mixture`` (float64): the ``LatentPrior`` protocol plus closed forms.

    ``eps(z_t, t)`` is ``-sqrt(1 - ab) grad log p_t(z_t)`` with ``ab = alphas_cumprod[t]`` (0-based ``t``,
    default schedule ``make_alphas_cumprod("linear")``), exact at every ``t`` and differentiable in ``z_t``.
    """

    def __init__(self, mixture: GaussianMixture, alphas_cumprod: Tensor | None = None):
        if not isinstance(mixture, GaussianMixture):
            raise ValueError(f"mixture must be a GaussianMixture, got {type(mixture).__name__}")
        self.mixture = mixture
        self.alphas_cumprod = check_alphas_cumprod(alphas_cumprod)
        self.k = mixture.d

    def alpha_bar(self, t) -> float:
        """``alphas_cumprod[t]``, validating ``t``."""
        return _alpha_at(self.alphas_cumprod, t)

    def marginal(self, t: int) -> GaussianMixture:
        """The mixture law of ``z_t``."""
        return self.mixture.noised(self.alpha_bar(t))

    def score_at(self, z_t: Tensor, ab: float) -> Tensor:
        """``grad log p_t(z_t)`` at ``abar = ab`` (any ``ab`` in ``(0, 1]``, also off the schedule)."""
        return self.mixture.noised(ab).score(z_t)

    def score(self, z_t: Tensor, t: int) -> Tensor:
        """``grad log p_t(z_t)`` at timestep ``t``."""
        return self.score_at(z_t, self.alpha_bar(t))

    def eps(self, z_t: Tensor, t: int) -> Tensor:
        """``-sqrt(1 - ab) grad log p_t(z_t)``."""
        ab = self.alpha_bar(t)
        return -((1.0 - ab) ** 0.5) * self.score_at(z_t, ab)

    def tweedie_at(self, z_t: Tensor, ab: float) -> Tensor:
        """``E[z0 | z_t] = sum_j r_j (m_j + sqrt(ab) C_j (C_j^t)^{-1} (z_t - sqrt(ab) m_j))``."""
        mix = self.mixture
        noised = mix.noised(ab)
        r = noised.responsibilities(z_t)
        diff = z_t.unsqueeze(1) - noised.means  # [N, K, d]
        gain = ab**0.5 * diff  # C_j (C_j^t)^{-1} = I on the complement of U_j
        if mix.U is not None:
            p = mix._proj(diff)
            g = mix.lam / (ab * mix.lam + 1.0 - ab) - 1.0
            gain = gain + ab**0.5 * torch.einsum("kdr,nkr->nkd", mix.U, g * p)
        return torch.einsum("nk,nkd->nd", r, mix.means + gain)

    def tweedie_mean(self, z_t: Tensor, t: int) -> Tensor:
        """``E[z0 | z_t]`` at timestep ``t``."""
        return self.tweedie_at(z_t, self.alpha_bar(t))

    def sample(self, n: int, generator=None) -> Tensor:
        """``n`` draws of ``z0``."""
        return self.mixture.sample(n, generator)

    def __repr__(self) -> str:
        return f"GaussianMixtureLatentPrior(K={self.mixture.K}, k={self.k}, T={self.alphas_cumprod.numel()})"


def mixture_posterior(mixture: GaussianMixture, B: Tensor, y: Tensor, sigma_y: float) -> GaussianMixture:
    """Exact ``p(x | y)`` for ``x ~ mixture`` and ``y = B x + sigma_y n`` (a Gaussian mixture).

    Per component, with ``G_j = B C_j B^T + sigma^2 I`` and ``K_j = C_j B^T G_j^{-1}``: mean
    ``m_j + K_j (y - B m_j)``, covariance ``C_j - K_j B C_j``, log-weight ``log w_j + log N(y; B m_j, G_j)``.
    Only ``d_y x d_y`` systems are solved, so ``sigma_y = 0`` is allowed when ``B C_j B^T`` is invertible.
    For identity ``C_j`` the covariance is ``I - Q diag(s^2/(s^2 + sigma^2)) Q^T`` (``B = P diag(s) Q^T``),
    stored in low-rank form.
    """
    B = as_tensor(B, "B")
    y = as_tensor(y, "y")
    sigma = check_sigma(sigma_y)
    if B.dim() != 2 or B.shape[1] != mixture.d:
        raise ValueError(f"B must be [d_y, d={mixture.d}], got shape {list(B.shape)}")
    if y.shape != (B.shape[0],):
        raise ValueError(f"y must be [d_y] = [{B.shape[0]}], got shape {list(y.shape)}")
    dy = B.shape[0]
    eye_y = torch.eye(dy, dtype=F64)
    covs = mixture.covs if mixture.U is not None else None
    BC = B.expand(mixture.K, -1, -1) if covs is None else B @ covs  # [K, dy, d] = B C_j
    G = BC @ B.T + sigma**2 * eye_y  # [K, dy, dy]
    L = torch.linalg.cholesky(G)
    resid = y - mixture.means @ B.T  # [K, dy]
    sol = torch.cholesky_solve(resid.unsqueeze(-1), L).squeeze(-1)  # G^{-1} (y - B m_j)
    means = mixture.means + (BC.mT @ sol.unsqueeze(-1)).squeeze(-1)
    logdet = 2 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
    loglik = -0.5 * ((resid * sol).sum(-1) + logdet + dy * LOG_2PI)
    logw = mixture.weights.log() + loglik
    weights = torch.softmax(logw, 0)
    if covs is None:
        _, s, Qt = torch.linalg.svd(B, full_matrices=False)
        Q = Qt.T  # [d, r]
        lam = sigma**2 / (s**2 + sigma**2) if sigma > 0 else torch.zeros_like(s)
        return GaussianMixture(weights, means, Q.expand(mixture.K, -1, -1), lam.expand(mixture.K, -1))
    post_covs = covs - BC.mT @ torch.cholesky_solve(BC, L)
    post = GaussianMixture.from_covs(weights, means, (post_covs + post_covs.mT) / 2)
    return post
