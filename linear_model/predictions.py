"""Closed-form predictions of docs/theory.md §5-§6 (step bounds, rates, the T7 recursion, risks).

**Convention (docs/theory.md §1.2): squared norms, no factor 1/2.** The losses are ``L = ||y - A D z0hat||^2``
and ``G = ||r_glue||^2`` and a guided step is ``z <- z' - omega grad L - gamma grad G``; so the gradient
of ``||J z - b||^2`` is ``2 J^T (J z - b)`` and every bound below carries the matching factor 2 (with
``1/2 ||.||^2`` the step bounds double). ``s_j`` are the eigenvalues of ``M = (AS)^T(AS)``,
``h(s) = omega s + gamma s^2`` and ``c = sqrt(abar_t)`` is the Tweedie factor.

Functions accept floats or tensors and broadcast; they return float64 tensors (0-d for scalar input).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from linear_model._batch import as_matrix, as_tensor, check_pos_int, check_sigma, comb_ratio, mT, sym
from linear_model.prior import check_alphas_cumprod, pixel_tweedie_matrix

__all__ = [
    "contraction_rate",
    "latent_step_bound",
    "best_ldps_step",
    "pixel_exact_step_bound",
    "pixel_ridge_step_bound",
    "one_shot_step",
    "recursion_coefficients",
    "RecursionTrajectory",
    "eigen_recursion",
    "eigen_recursion_trajectory",
    "expected_error",
    "expected_error_ddpm",
    "mask_recovery_probability",
    "off_manifold_energy",
    "posterior_mean_risk",
    "least_squares_risk",
]


def _t(x, name: str) -> Tensor:
    return as_tensor(x, name)


def contraction_rate(eigs, omega, gamma, c=1.0) -> Tensor:
    """``rho = max_j |1 - 2 c^2 (omega s_j + gamma s_j^2)|`` (T3): the error ``e = c z - w0`` of the
    fixed-point iteration obeys ``e_{n+1} = (I - 2c^2(omega M + gamma M^2)) e_n``. Max over the last axis.

    >>> float(contraction_rate(torch.tensor([1.0, 3.0]), 0.25, 0.0))   # = (kappa-1)/(kappa+1)
    0.5
    """
    s = _t(eigs, "eigs")
    h = _t(omega, "omega") * s + _t(gamma, "gamma") * s**2
    return (1.0 - 2.0 * _t(c, "c") ** 2 * h).abs().amax(-1)


def latent_step_bound(s_max, c=1.0, gamma=0.0) -> Tensor:
    """Largest contracting measurement step ``omega < (1 - c^2 gamma s_max^2)/(c^2 s_max)`` (T3), from
    ``c^2 (omega s_max + gamma s_max^2) < 1``; ``0`` when ``c^2 gamma s_max^2 >= 1`` (no omega contracts).

    >>> float(latent_step_bound(2.0)), float(latent_step_bound(2.0, gamma=1.0))
    (0.5, 0.0)
    """
    s = _t(s_max, "s_max")
    c2 = _t(c, "c") ** 2
    return ((1.0 - c2 * _t(gamma, "gamma") * s**2) / (c2 * s)).clamp_min(0.0)


def best_ldps_step(s_min, s_max, c=1.0) -> Tensor:
    """Rate-optimal latent-DPS step ``1/(c^2 (s_max + s_min))``, giving ``rho = (kappa - 1)/(kappa + 1)``."""
    return 1.0 / (_t(c, "c") ** 2 * (_t(s_max, "s_max") + _t(s_min, "s_min")))


def _inv_top_eig(H: Tensor) -> Tensor:
    return 1.0 / torch.linalg.eigvalsh(sym(H))[..., -1]


def pixel_exact_step_bound(A: Tensor, S: Tensor, alpha=1.0) -> Tensor:
    """Pixel-DPS step bound with the exact subspace denoiser ``x0hat = sqrt(a) P x`` (T6.1):
    ``1/lambda_max(a P A^T A P)``, computed in pixel space. It equals the latent bound
    ``latent_step_bound(s_max, c=sqrt(a))``: d enters only through ``M``.
    """
    return pixel_ridge_step_bound(A, S, 0.0, alpha)


def pixel_ridge_step_bound(A: Tensor, S: Tensor, ridge: float, alpha: float) -> Tensor:
    """``1/lambda_max(V^T A^T A V)`` with the ridge pixel Tweedie ``V = g_in P + g_off (I - P)`` at
    ``abar = alpha`` (T6.2; ``V`` from :func:`linear_model.prior.pixel_tweedie_matrix`)."""
    A = as_matrix(A, "A")
    V = pixel_tweedie_matrix(S, alpha, ridge)
    if A.shape[-1] != V.shape[-1]:
        raise ValueError(f"A has {A.shape[-1]} columns but S has {V.shape[-1]} rows")
    AV = A @ V
    return _inv_top_eig(mT(AV) @ AV)


def one_shot_step(s) -> Tensor:
    """Unique one-shot step ``omega* = 1/(2 s)`` recovering ``w0`` when ``M = s I`` (T2)."""
    return 1.0 / (2.0 * _t(s, "s"))


def recursion_coefficients(
    eigs, alphas_cumprod, omega, gamma, *, ddpm: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-step coefficients ``(a_t, b_t, var_t)`` of the T7 recursion, each ``[T, *eigs.shape]``, row
    ``i`` for theory step ``t = i + 1`` (``abar_t = alphas_cumprod[t-1]``, ``abar_0 = 1``)::

        b_t  = 2 sqrt(ab_t) h(s)
        DDIM: a_t = sqrt(ab_{t-1} ab_t) + sqrt((1 - ab_{t-1})(1 - ab_t)) - 2 ab_t h(s),  var_t = 0
        DDPM: a_t = c1_t sqrt(ab_t) + c2_t - 2 ab_t h(s),                              var_t = beta~_t
    """
    s = _t(eigs, "eigs")
    ac = check_alphas_cumprod(alphas_cumprod)
    ap = torch.cat([ac.new_ones(1), ac[:-1]])
    view = (-1,) + (1,) * s.dim()
    a, ap = ac.view(view), ap.view(view)
    h = _t(omega, "omega") * s + _t(gamma, "gamma") * s**2
    guide = 2.0 * a * h
    if ddpm:
        beta = 1.0 - a / ap
        c1 = ap.sqrt() * beta / (1.0 - a)
        c2 = (a / ap).sqrt() * (1.0 - ap) / (1.0 - a)
        coef = c1 * a.sqrt() + c2 - guide
        var = ((1.0 - ap) * beta / (1.0 - a)).expand_as(coef)
    else:
        coef = (ap * a).sqrt() + ((1.0 - ap) * (1.0 - a)).sqrt() - guide
        var = torch.zeros_like(coef)
    b = 2.0 * a.sqrt() * h
    return coef, b.expand_as(coef), var


@dataclass(frozen=True)
class RecursionTrajectory:
    """``m[t]``, ``v[t]`` for theory time ``t = 0..T`` (``m[T], v[T]`` is the start, ``m[0], v[0]`` the end),
    each ``[T + 1, *eigs.shape]``."""

    m: Tensor
    v: Tensor


def eigen_recursion_trajectory(
    eigs, w, alphas_cumprod, omega, gamma, *, ddpm: bool, m_start=0.0, v_start=1.0
) -> RecursionTrajectory:
    """Mean and variance of ``u_t = q_j^T z_t`` along the guided chain (T7), per eigendirection::

        u_{t-1} = a_t u_t + b_t w + sqrt(var_t) xi,   m_{t-1} = a_t m_t + b_t w,   v_{t-1} = a_t^2 v_t + var_t

    starting from ``u_T ~ N(m_start, v_start)`` (default ``N(0, 1)``); ``w = q_j^T w0``. Valid for
    ``Sigma0 = I``, ``E = S^T``, ``D = S``, noiseless ``y`` and the PSLD glue.
    """
    a, b, var = recursion_coefficients(eigs, alphas_cumprod, omega, gamma, ddpm=ddpm)
    w = _t(w, "w")
    T = a.shape[0]
    shape = torch.broadcast_shapes(a.shape[1:], w.shape)
    m = torch.empty((T + 1, *shape), dtype=torch.float64)
    v = torch.empty_like(m)
    m[T] = _t(m_start, "m_start")
    v[T] = _t(v_start, "v_start")
    for t in range(T, 0, -1):
        m[t - 1] = a[t - 1] * m[t] + b[t - 1] * w
        v[t - 1] = a[t - 1] ** 2 * v[t] + var[t - 1]
    return RecursionTrajectory(m, v)


def eigen_recursion(eigs, w, alphas_cumprod, omega, gamma, *, ddpm: bool) -> tuple[Tensor, Tensor]:
    """Final ``(m, v)``: ``u_0 ~ N(m, v)`` per eigendirection after all ``T`` steps (T7); see
    :func:`eigen_recursion_trajectory`.

    One unguided DDIM step from ``ab_1 = 0.5`` returns the Tweedie mean ``sqrt(0.5) u_1``:

    >>> ac = torch.tensor([0.5], dtype=torch.float64)
    >>> m, v = eigen_recursion(torch.tensor([1.0]), torch.tensor([1.0]), ac, 0.0, 0.0, ddpm=False)
    >>> float(m), round(float(v), 12)
    (0.0, 0.5)
    """
    tr = eigen_recursion_trajectory(eigs, w, alphas_cumprod, omega, gamma, ddpm=ddpm)
    return tr.m[0], tr.v[0]


def expected_error(eigs, w, alphas_cumprod, omega, gamma, *, ddpm: bool) -> Tensor:
    """``E||z0 - w0||^2 = sum_j (m_j - w_j)^2 + v_j`` over the start ``z_T ~ N(0, I)`` (and DDPM noise)."""
    m, v = eigen_recursion(eigs, w, alphas_cumprod, omega, gamma, ddpm=ddpm)
    return ((m - _t(w, "w")) ** 2 + v).sum(-1)


def expected_error_ddpm(eigs, w, alphas_cumprod, omega, gamma) -> Tensor:
    """:func:`expected_error` for the DDPM chain (docs/theory.md T7)."""
    return expected_error(eigs, w, alphas_cumprod, omega, gamma, ddpm=True)


def mask_recovery_probability(d: int, k: int, l: int) -> float:
    """``P(rank(AS) = k) = C(d - k, l - k)/C(d, l)`` for a uniformly random ``l``-row mask and a
    coordinate subspace with ``|support| = k`` (T9: every support coordinate must be observed); 0 if l < k.

    >>> mask_recovery_probability(4, 2, 3)
    0.5
    """
    d = check_pos_int(d, "d")
    k = check_pos_int(k, "k", minimum=0)
    l = check_pos_int(l, "l", minimum=0)
    if k > d:
        raise ValueError(f"k must be <= d, got k={k} > d={d}")
    if l > d:
        raise ValueError(f"l must be <= d for a row mask, got l={l} > d={d}")
    if l < k:
        return 0.0
    return comb_ratio(d - k, l - k, d, l)


def off_manifold_energy(d: int, k: int, alpha_tmin) -> Tensor:
    """``E||(I - P) x||^2 = (d - k)(1 - abar_{t_min})`` for a pixel chain stopped at ``t_min`` (T6.3)."""
    return (d - k) * (1.0 - _t(alpha_tmin, "alpha_tmin"))


def posterior_mean_risk(eigs, sigma_y) -> Tensor:
    """Bayes risk ``E||E[z0|y] - z0||^2 = tr((I + M/sigma_y^2)^{-1}) = sum_j sigma^2/(sigma^2 + s_j)``
    (prior ``N(0, I)``, docs/theory.md §5.3)."""
    s2 = check_sigma(sigma_y) ** 2
    s = _t(eigs, "eigs")
    if s2 == 0:
        return (s <= 0).to(torch.float64).sum(-1)
    return (s2 / (s2 + s)).sum(-1)


def least_squares_risk(eigs, sigma_y) -> Tensor:
    """``E||z_LS - w0||^2 = sigma_y^2 tr(M^{-1}) = sigma^2 sum_j 1/s_j`` (docs/theory.md §5.3, T5);
    ``>=`` the Bayes risk."""
    s2 = check_sigma(sigma_y) ** 2
    return (s2 / _t(eigs, "eigs")).sum(-1)
