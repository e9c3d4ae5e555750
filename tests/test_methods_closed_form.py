"""Each new method's step against its closed form on the linear-Gaussian simulator (``linear_model``),
with a negative case per check: the same comparison must reject a wrong sign or a missing factor.

* DiffPIR: the proximal data step equals ``(A^T A + rho I)^{-1} (A^T y + rho x0)`` (dense solve), on the
  closed-form (mask) path and the CG (dense ``A``) path; the hook's DDIM step equals DiffPIR's update.
* MPGD: ``z0_hat - omega / sqrt(a') * 2 S^T A^T (A S z0_hat - y)`` for the squared loss.
* ReSample: the resampled ``z_{t-1}`` has the mean and variance of ``N(sqrt(a') z0, (1 - a') I) *
  N(z', s^2 I)`` (Monte Carlo, 20000 draws).
* DAPS: unadjusted Langevin on the level's target has the stationary law ``N(m, (P - lr P^2 / 2)^{-1})``.
* STSL: Hutchinson over all Rademacher sign vectors is the exact trace; second-order Tweedie's trace
  equals the exact posterior covariance trace ``tr (Sigma^{-1} + a / (1 - a) I)^{-1}``.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from linear_model import GaussianLatentPrior, SubspaceAutoencoder
from psld.hooks import Step
from psld.methods import DAPSConfig, DiffPIRConfig, MPGDConfig, ReSampleConfig, STSLConfig
from psld.methods.common import prox_data
from psld.methods.daps import langevin
from psld.methods.stsl import hutchinson_trace
from psld.operators import MaskOperator, MatrixOperator
from psld.schedule import ddim_step, predict_z0

DT = torch.float64


def _linear(d: int = 6, k: int = 3, l: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ae = SubspaceAutoencoder(d=d, k=k, seed=seed)
    A = torch.randn(l, d, generator=g, dtype=DT)
    return ae, A, g


def _step(prior, ae, op, y, a_index: int = 40, prev_index: int = 30, generator=None) -> Step:
    ac = prior.alphas_cumprod
    return Step(
        0,
        a_index,
        float(ac[a_index]),
        float(ac[prev_index]),
        prior,
        ae.encode,
        ae.decode,
        op,
        y,
        generator,
        10,
        len(ac),
    )


def _close(measured: torch.Tensor, predicted: torch.Tensor, tol: float = 1e-9) -> bool:
    return bool(torch.allclose(measured, predicted, rtol=tol, atol=tol))


# ------------------------------------------------------------------------------------------ DiffPIR
@pytest.mark.parametrize("kind", ["dense-cg", "mask-closed-form"])
def test_diffpir_prox_is_the_regularised_least_squares_solution(kind):
    g = torch.Generator().manual_seed(1)
    if kind == "dense-cg":
        A = torch.randn(4, 6, generator=g, dtype=DT)
        op, shape = MatrixOperator(A), (2, 6)
    else:
        mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
        op, shape = MaskOperator(mask, (1, 2, 3)), (2, 1, 2, 3)
        A = torch.diag(mask.flatten().to(DT))
    x0 = torch.randn(shape, generator=g, dtype=DT)
    y = op.forward(torch.randn(shape, generator=g, dtype=DT))
    rho = 0.37
    measured = prox_data(op, y, x0, rho, cg_iters=12).reshape(2, -1)
    H, b = A.T @ A + rho * torch.eye(A.shape[1], dtype=DT), op.adjoint(y).reshape(2, -1)
    predicted = torch.linalg.solve(H, (b + rho * x0.reshape(2, -1)).T).T
    assert _close(measured, predicted)
    # negative cases: the prior weight rho missing on x0, and the data term with the wrong sign
    assert not _close(measured, torch.linalg.solve(H, (b + x0.reshape(2, -1)).T).T)
    assert not _close(measured, torch.linalg.solve(H, (-b + rho * x0.reshape(2, -1)).T).T)


def test_diffpir_step_is_prox_reencode_and_renoise_with_derived_eps():
    ae, A, g = _linear()
    prior = GaussianLatentPrior(k=3)
    op = MatrixOperator(A)
    y = op.forward(ae.decode(torch.randn(2, 3, generator=g, dtype=DT)))
    cfg = DiffPIRConfig(lam=2.0, sigma_n=0.3, zeta=0.4, cg_iters=20)
    step = _step(prior, ae, op, y)
    z = torch.randn(2, 3, generator=g, dtype=DT)
    eps = prior.eps(z, step.t)
    z0, eps2 = cfg.update_z0(step, z, predict_z0(z, eps, step.a), eps)
    a, ap = step.a, step.a_prev
    rho = 2.0 * 0.3**2 / ((1 - a) / a)
    x0 = ae.decode(predict_z0(z, eps, a))
    x = torch.linalg.solve(A.T @ A + rho * torch.eye(6, dtype=DT), (y @ A + rho * x0).T).T
    assert _close(z0, ae.encode(x))
    eps_hat = (z - math.sqrt(a) * ae.encode(x)) / math.sqrt(1 - a)
    xi = torch.randn(2, 3, generator=g, dtype=DT)
    got = ddim_step(z0, eps2, ap, cfg.step_sigma(a, ap), xi)
    want = math.sqrt(ap) * ae.encode(x) + math.sqrt(1 - ap) * (math.sqrt(0.6) * eps_hat + math.sqrt(0.4) * xi)
    assert _close(got, want)
    # negative: DiffPIR's noise weights swapped (sqrt(zeta) on eps_hat) must be caught
    swapped = math.sqrt(ap) * ae.encode(x) + math.sqrt(1 - ap) * (
        math.sqrt(0.4) * eps_hat + math.sqrt(0.6) * xi
    )
    assert not _close(got, swapped)


# ------------------------------------------------------------------------------------------ MPGD
def test_mpgd_z0_update_is_a_gradient_step_scaled_by_one_over_sqrt_abar_prev():
    ae, A, g = _linear()
    prior = GaussianLatentPrior(k=3)
    op = MatrixOperator(A)
    y = torch.randn(2, 4, generator=g, dtype=DT)
    step = _step(prior, ae, op, y)
    z0 = torch.randn(2, 3, generator=g, dtype=DT)
    omega = 0.05
    measured, _ = MPGDConfig(omega=omega, loss="squared").z0_step(step, z0)
    M = A @ ae.S
    grad = 2 * (z0 @ M.T - y) @ M
    c = omega / math.sqrt(step.a_prev)
    assert _close(measured, z0 - c * grad)
    assert not _close(measured, z0 - c * grad / 2)  # missing factor 2 of the squared norm
    assert not _close(measured, z0 + c * grad)  # wrong sign
    assert not _close(measured, z0 - omega * grad)  # missing 1 / sqrt(abar_prev)


# ------------------------------------------------------------------------------------------ ReSample
def test_resample_draws_have_the_product_of_gaussians_mean_and_variance():
    """``pixel_iters = latent_iters = 0``: the consistent latent is E(D(z0)) = z0 for the subspace model."""
    ae, A, g = _linear()
    prior = GaussianLatentPrior(k=3)
    n = 20000
    op = MatrixOperator(A)
    y = torch.zeros(n, 4, dtype=DT)
    cfg = ReSampleConfig(num_steps=12, every=1, splits=2, pixel_iters=0, latent_iters=0, gamma_resample=3.0)
    step = _step(prior, ae, op, y, a_index=60, prev_index=45, generator=torch.Generator().manual_seed(7))
    step.i = 5  # index 6 = N - N // 2: the pixel stage
    assert cfg.stage(step.i) == "pixel"
    z0 = torch.tensor([0.8, -1.1, 0.3], dtype=DT).expand(n, 3)
    zp = torch.tensor([-0.4, 0.9, 1.5], dtype=DT).expand(n, 3)
    draws = cfg.consistency(step, zp.clone(), z0.clone())
    a, ap = step.a, step.a_prev
    s2 = 3.0 * (1 - ap) / (1 - a) * (1 - a / ap)
    prec = 1 / (1 - ap) + 1 / s2
    mean = (math.sqrt(ap) * z0[0] / (1 - ap) + zp[0] / s2) / prec
    var = 1 / prec
    se_mean = math.sqrt(var / n)
    emp_mean, emp_var = draws.mean(0), draws.var(0)

    def matches(m, v) -> bool:
        return bool(((emp_mean - m).abs() < 5 * se_mean).all() and ((emp_var / v - 1).abs() < 0.06).all())

    assert matches(mean, var)
    swapped = (math.sqrt(ap) * z0[0] / s2 + zp[0] / (1 - ap)) / prec  # weights exchanged
    assert not matches(swapped, var)
    assert not matches(mean, s2 / (s2 + 1 - ap))  # variance missing the factor (1 - a')


# ------------------------------------------------------------------------------------------ DAPS
def test_daps_langevin_has_the_gaussian_stationary_law_of_the_discrete_chain():
    ae, A, g = _linear(d=5, k=2, l=3, seed=3)
    n, tau, r = 6000, 0.8, 0.6
    op = MatrixOperator(A)
    y1 = torch.randn(3, generator=g, dtype=DT)
    zhat1 = torch.tensor([0.5, -0.7], dtype=DT)
    M = A @ ae.S
    P = 2 * M.T @ M / tau**2 + torch.eye(2, dtype=DT) / r**2
    m = torch.linalg.solve(P, 2 * M.T @ y1 / tau**2 + zhat1 / r**2)
    lr = 0.5 / float(torch.linalg.eigvalsh(P).max())
    cov = torch.linalg.inv(P - lr * P @ P / 2)
    cfg = DAPSConfig(tau=tau, grad_clip=0.0)  # the official clipping off: the target is then Gaussian
    grad = cfg.grad_log_p(ae.decode, op, y1.expand(n, 3), zhat1.expand(n, 2), r)
    x = langevin(grad, zhat1.expand(n, 2).clone(), lr, 400, torch.Generator().manual_seed(0))
    emp_mean, emp_cov = x.mean(0), torch.cov(x.T)
    se = (torch.diagonal(cov) / n).sqrt()

    def matches(mu, c) -> bool:
        ok_mean = bool(((emp_mean - mu).abs() < 5 * se).all())
        return ok_mean and bool(torch.allclose(emp_cov, c, rtol=0.08, atol=0.08 * float(c.diagonal().max())))

    assert matches(m, cov)
    assert not matches(m, cov / 2)  # noise sqrt(lr) instead of sqrt(2 lr)
    m_wrong = torch.linalg.solve(
        P, -2 * M.T @ y1 / tau**2 + zhat1 / r**2
    )  # data gradient with the wrong sign
    assert not matches(m_wrong, cov)


# ------------------------------------------------------------------------------------------ STSL
def test_hutchinson_over_all_sign_vectors_is_the_exact_trace():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(4, 4, generator=g, dtype=DT) * 3
    probes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4)), dtype=DT)[:, None, :]
    est = hutchinson_trace(lambda v: v @ M.T, probes)
    assert _close(est, torch.trace(M).reshape(1))
    assert not _close(est * len(probes), torch.trace(M).reshape(1))  # a sum, missing the 1/m factor
    assert not _close(hutchinson_trace(lambda v: v @ M.T, probes[:1]), torch.trace(M).reshape(1))


def test_stsl_trace_term_is_the_exact_posterior_covariance_trace():
    g = torch.Generator().manual_seed(2)
    B = torch.randn(3, 3, generator=g, dtype=DT)
    Sigma = B @ B.T + 0.3 * torch.eye(3, dtype=DT)
    prior = GaussianLatentPrior(cov=Sigma)
    ae = SubspaceAutoencoder(d=5, k=3, seed=0)
    op = MatrixOperator(torch.randn(2, 5, generator=g, dtype=DT))
    step = _step(prior, ae, op, torch.zeros(1, 2, dtype=DT), a_index=300, prev_index=200)
    z = torch.randn(1, 3, generator=g, dtype=DT)
    probes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=DT)[:, None, :]
    a = step.a
    exact = torch.trace(torch.linalg.inv(torch.linalg.inv(Sigma) + a / (1 - a) * torch.eye(3, dtype=DT)))
    measured = STSLConfig().trace_cov(step, z, probes)
    assert _close(measured, exact.reshape(1), tol=1e-6)
    tr_j = (3 - measured * a / (1 - a)) / math.sqrt(1 - a)
    no_factor = (1 - a) / a * (3 - tr_j)  # the sqrt(1 - a) factor on tr J dropped
    assert not _close(no_factor, exact.reshape(1), tol=1e-6)


def test_daps_clips_the_data_gradient_elementwise_before_dividing_by_tau_squared():
    ae, A, g = _linear(d=5, k=2, l=3, seed=4)
    op = MatrixOperator(A * 10)  # large residual gradients: some entries above the clip, some below
    y = torch.randn(4, 3, generator=g, dtype=DT)
    x = torch.randn(4, 2, generator=g, dtype=DT)
    zhat = torch.randn(4, 2, generator=g, dtype=DT)
    M = (A * 10) @ ae.S
    raw = 2 * (x @ M.T - y) @ M
    c = 50.0
    assert bool((raw.abs() > c).any() and (raw.abs() < c).any())
    tau, r = 0.5, 0.7
    got = DAPSConfig(tau=tau, grad_clip=c).grad_log_p(ae.decode, op, y, zhat, r)(x)
    assert _close(got, -raw.clamp(-c, c) / tau**2 - (x - zhat) / r**2)
    assert not _close(got, -raw / tau**2 - (x - zhat) / r**2)  # unclipped
