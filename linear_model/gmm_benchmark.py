"""The Gaussian-mixture posterior benchmark of MCGdiff (Cardoso et al., ICLR 2024), docs/theory.md §10.3.

Prior: 25 components ``N(mu_ij, I_d)``, ``mu_ij = (-8i, -8j, -8i, -8j, ...)`` (the pair repeated ``d/2``
times, ``i, j in {-2..2}``), weights ``g_ij^2 / sum g^2`` with ``g ~ N(0, 1)``. Measurement:
``A = U diag(s) V_{:d_y}`` from the SVD of a standard normal ``[d_y, d]`` matrix with ``s`` replaced by sorted
(descending) uniform(0, 1) draws; ``sigma_y = u * max(s)``, ``u ~ uniform(0, 1)``; ``y = A x + sigma_y n``
with ``x`` drawn from the prior.
Distance: sliced Wasserstein, the mean of the 1-D ``W1`` over ``n_slices`` random unit directions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from linear_model._batch import check_pos_int, rng
from linear_model.mixture import GaussianMixture, mixture_posterior

__all__ = [
    "GMMProblem",
    "mcgdiff_prior",
    "mcgdiff_problem",
    "sliced_wasserstein",
    "mode_weights",
    "mean_ci",
]

F64 = torch.float64


@dataclass(frozen=True)
class GMMProblem:
    """One instance: prior, ``A`` ``[d_y, d]``, ``sigma_y``, ``y``, the true ``x`` and the posterior."""

    prior: GaussianMixture
    A: Tensor
    singular_values: Tensor
    sigma_y: float
    x_true: Tensor
    y: Tensor
    posterior: GaussianMixture


def mcgdiff_prior(d: int, generator=None) -> GaussianMixture:
    """The 25-component prior in dimension ``d`` (even), weights drawn from ``generator``."""
    d = check_pos_int(d, "d")
    if d % 2:
        raise ValueError(f"d must be even (the mean pattern repeats a pair), got {d}")
    means = torch.tensor(
        [[-8.0 * i, -8.0 * j] * (d // 2) for i in range(-2, 3) for j in range(-2, 3)], dtype=F64
    )
    g = torch.randn(25, generator=rng(generator), dtype=F64) ** 2
    return GaussianMixture.isotropic(g / g.sum(), means)


def mcgdiff_problem(d: int, d_y: int, generator=None, prior: GaussianMixture | None = None) -> GMMProblem:
    """One random instance (prior weights drawn first unless ``prior`` is given), all from ``generator``."""
    g = rng(generator)
    d_y = check_pos_int(d_y, "d_y")
    if d_y > d:
        raise ValueError(f"d_y must be <= d, got d_y={d_y}, d={d}")
    prior = mcgdiff_prior(d, g) if prior is None else prior
    M = torch.randn(d_y, d, generator=g, dtype=F64)
    U, _, Vh = torch.linalg.svd(M, full_matrices=True)
    s = torch.sort(torch.rand(d_y, generator=g, dtype=F64), descending=True).values
    A = U @ torch.diag(s) @ Vh[:d_y]
    sigma = float(torch.rand((), generator=g, dtype=F64)) * float(s.max())
    x = prior.sample(1, g)[0]
    y = A @ x + sigma * torch.randn(d_y, generator=g, dtype=F64)
    return GMMProblem(prior, A, s, sigma, x, y, mixture_posterior(prior, A, y, sigma))


def sliced_wasserstein(a: Tensor, b: Tensor, n_slices: int = 100, generator=None) -> float:
    """``mean_k W1(<a, u_k>, <b, u_k>)`` over ``n_slices`` uniform random unit directions ``u_k``.

    For equal sample sizes the 1-D ``W1`` is ``mean |sort(a) - sort(b)|``; otherwise it is the integral of
    ``|F_a - F_b|`` (as ``scipy.stats.wasserstein_distance``).
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be [n, d] with the same d, got {list(a.shape)} and {list(b.shape)}")
    u = torch.randn(check_pos_int(n_slices, "n_slices"), a.shape[1], generator=rng(generator), dtype=F64)
    u = u / u.norm(dim=1, keepdim=True)
    pa = (a.to(F64) @ u.T).sort(0).values.T.contiguous()  # [slices, n]
    pb = (b.to(F64) @ u.T).sort(0).values.T.contiguous()
    if pa.shape[1] == pb.shape[1]:
        return float((pa - pb).abs().mean())
    return float(sum(_w1(pa[k], pb[k]) for k in range(u.shape[0])) / u.shape[0])


def _w1(sa: Tensor, sb: Tensor) -> float:
    """``int |F_a - F_b|`` for sorted samples."""
    allv = torch.cat([sa, sb]).sort().values
    dx = allv[1:] - allv[:-1]
    fa = torch.searchsorted(sa, allv[:-1], right=True).to(F64) / sa.numel()
    fb = torch.searchsorted(sb, allv[:-1], right=True).to(F64) / sb.numel()
    return float(((fa - fb).abs() * dx).sum())


def mode_weights(samples: Tensor, mixture: GaussianMixture) -> Tensor:
    """Fraction of ``samples`` whose nearest component mean (Euclidean) is each of the ``K`` components."""
    dist = torch.cdist(samples.to(F64), mixture.means)
    counts = torch.bincount(dist.argmin(1), minlength=mixture.K).to(F64)
    return counts / samples.shape[0]


def mean_ci(values) -> tuple[float, float]:
    """``(mean, 1.96 std / sqrt(n))`` over finite values (population std, as the MCGdiff tables)."""
    v = torch.as_tensor([float(x) for x in values if math.isfinite(float(x))], dtype=F64)
    if v.numel() == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(1.96 * v.std(unbiased=False) / v.numel() ** 0.5)
