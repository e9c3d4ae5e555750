"""Two-state (T = 1) diffusion helpers for docs/theory.md T1 and §5.6.

Forward step ``z1 = sqrt(1 - beta) z0 + sqrt(beta) eps``. The least-squares-optimal linear denoiser
``phi* = argmin_phi E||z0 - phi z1||^2 = sqrt(1 - beta) Sigma0 ((1 - beta) Sigma0 + beta I)^{-1}``
is the Tweedie matrix at ``abar = 1 - beta``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from linear_model._batch import as_float, as_tensor, sqrt_psd
from linear_model.prior import pixel_tweedie_matrix

__all__ = ["optimal_latent_denoiser", "optimal_pixel_denoiser", "fit_linear_denoiser"]


def _beta(beta) -> float:
    b = as_float(beta, "beta")
    if not 0 < b < 1:
        raise ValueError(f"beta must be in (0, 1), got {b}")
    return b


def optimal_latent_denoiser(beta: float, cov: Tensor) -> Tensor:
    """``phi* = sqrt(1 - beta) Sigma0 ((1 - beta) Sigma0 + beta I)^{-1}`` (``sqrt(1 - beta) I`` for
    ``Sigma0 = I``); ``cov`` is ``[k, k]`` or ``[B, k, k]``, PSD.

    >>> optimal_latent_denoiser(0.19, torch.eye(2, dtype=torch.float64)).diagonal().tolist()
    [0.9, 0.9]
    """
    b = _beta(beta)
    _, lam, U = sqrt_psd(cov, "cov")
    g = (1 - b) ** 0.5 * lam / ((1 - b) * lam + b)
    return (U * g.unsqueeze(-2)) @ U.transpose(-1, -2)


def optimal_pixel_denoiser(beta: float, S: Tensor) -> Tensor:
    """``theta* = sqrt(1 - beta) S S^T ((1 - beta) S S^T + beta I)^{-1}`` for ``x0 = S z0``,
    ``z0 ~ N(0, I)``; equal to ``sqrt(1 - beta) P`` for orthonormal ``S``."""
    return pixel_tweedie_matrix(S, 1.0 - _beta(beta), 0.0)


def fit_linear_denoiser(z0: Tensor, z1: Tensor) -> Tensor:
    """Least-squares ``phi_hat = argmin_phi sum_i ||z0_i - phi z1_i||^2 = (Z0^T Z1)(Z1^T Z1)^{-1}``.

    ``z0`` is ``[n, k0]`` (or ``[B, n, k0]``), ``z1`` ``[n, k1]`` (or ``[B, n, k1]``); returns ``[k0, k1]``
    (or ``[B, k0, k1]``).
    """
    z0 = as_tensor(z0, "z0")
    z1 = as_tensor(z1, "z1")
    if z0.dim() not in (2, 3) or z1.dim() != z0.dim() or z0.shape[:-1] != z1.shape[:-1]:
        raise ValueError(
            f"z0 and z1 must be [n, k] (or [B, n, k]) with the same leading shape, got "
            f"{list(z0.shape)} and {list(z1.shape)}"
        )
    if z1.shape[-2] < z1.shape[-1]:
        raise ValueError(f"z1 needs at least as many samples as dimensions, got {list(z1.shape)}")
    return torch.linalg.lstsq(z1, z0).solution.transpose(-1, -2)
