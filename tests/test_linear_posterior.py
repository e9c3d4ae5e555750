"""linear_model.posterior: exact posterior, least squares, ridge target and the exact oracle sampler."""

from dataclasses import dataclass

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import chi2

import linear_model as lm
from psld.schedule import make_alphas_cumprod

F64 = torch.float64
P_FALSE_FAIL = 1e-4


@dataclass
class PosteriorTest:
    mean_stat: float  # N |L^{-1}(xbar - mu)|^2 ~ chi2_k
    mean_limit: float
    cov_stat: float  # N (sum_{i<j} C_ij^2 + sum_i (C_ii - 1)^2 / 2) ~ chi2_{k(k+1)/2}, C whitened sample cov
    cov_limit: float

    @property
    def passed(self) -> bool:
        return self.mean_stat < self.mean_limit and self.cov_stat < self.cov_limit


def posterior_test(samples, mean, cov, p=P_FALSE_FAIL) -> PosteriorTest:
    """Hotelling-type mean test and whitened-covariance test of ``samples`` ``[N, k]`` against
    ``N(mean, cov)``.

    Whitening by the claimed Cholesky factor makes the samples ``N(0, I)`` under the null; both statistics
    are then (asymptotically) chi-squared, and each threshold is the ``1 - p`` quantile.
    """
    N, k = samples.shape
    L = torch.linalg.cholesky(cov)
    w = torch.linalg.solve_triangular(L, (samples - mean).T, upper=False).T
    mbar = w.mean(0)
    C = torch.cov(w.T)
    off = torch.triu(C, 1)
    cov_stat = N * (float((off**2).sum()) + float(((C.diagonal() - 1) ** 2).sum()) / 2)
    dof = k * (k + 1) // 2
    return PosteriorTest(N * float(mbar @ mbar), chi2.ppf(1 - p, k), cov_stat, chi2.ppf(1 - p, dof))


def problem(batch=None, d=12, k=4, l=6, seed=0, sigma=0.3):
    S = lm.random_subspace(d, k, seed=seed, batch=batch)
    A = lm.gaussian_matrix(l, d, seed=seed + 1, batch=batch)
    g = torch.Generator().manual_seed(seed + 2)
    w0 = torch.randn(*(() if batch is None else (batch,)), k, generator=g, dtype=F64)
    y = lm.measure(A, lm.SubspaceAutoencoder(S).decode(w0), sigma, generator=g)
    return A, S, w0, y


@pytest.mark.parametrize("sigma", [0.5, 0.1, 0.02])
def test_oracle_sampler_draws_the_exact_posterior(sigma):
    A, S, _, y = problem(batch=3, sigma=sigma, seed=int(sigma * 100))
    ac = make_alphas_cumprod("linear", 100)
    z = lm.oracle_sample(A, S, y, sigma, ac, 4000, generator=11)
    assert z.shape == (3, 4000, 4)
    post = lm.exact_posterior(A, S, y, sigma)
    for b in range(3):
        res = posterior_test(z[b], post.mean[b], post.cov[b])
        assert res.passed, res


def test_posterior_test_rejects_wrong_posteriors():
    A, S, _, y = problem(sigma=0.1, seed=5)
    ac = make_alphas_cumprod("linear", 100)
    z = lm.oracle_sample(A, S, y, 0.1, ac, 4000, generator=3)
    post = lm.exact_posterior(A, S, y, 0.1)
    assert posterior_test(z, post.mean, post.cov).passed
    sd_dir = torch.linalg.cholesky(post.cov)[:, 0]
    shifted = posterior_test(z, post.mean + 3 * sd_dir, post.cov)
    assert not shifted.passed and shifted.mean_stat > shifted.mean_limit
    small_shift = posterior_test(z, post.mean + 0.2 * sd_dir, post.cov)
    assert not small_shift.passed
    scaled = posterior_test(z, post.mean, 2 * post.cov)
    assert not scaled.passed and scaled.cov_stat > scaled.cov_limit
    # the prior is also a wrong posterior
    assert not posterior_test(z, torch.zeros(4, dtype=F64), torch.eye(4, dtype=F64)).passed


def test_oracle_sampler_with_a_general_gaussian_prior():
    A, S, _, y = problem(seed=7, sigma=0.2)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(4, 4, generator=g, dtype=F64)
    cov = X @ X.T / 4 + 0.3 * torch.eye(4, dtype=F64)
    mean = torch.randn(4, generator=g, dtype=F64)
    z = lm.oracle_sample(A, S, y, 0.2, make_alphas_cumprod("scaled_linear", 50), 4000, 5, mean=mean, cov=cov)
    post = lm.exact_posterior(A, S, y, 0.2, mean=mean, cov=cov)
    assert posterior_test(z, post.mean, post.cov).passed


@given(st.integers(1, 6), st.integers(0, 8), st.integers(0, 10**6), st.floats(0.01, 2.0))
def test_exact_posterior_equals_information_form(k, extra_l, seed, sigma):
    l, d = k + extra_l, k + extra_l + 3
    g = torch.Generator().manual_seed(seed)
    S = lm.random_subspace(d, k, seed=g)
    A = lm.gaussian_matrix(l, d, seed=g)
    X = torch.randn(k, k, generator=g, dtype=F64)
    cov = X @ X.T / k + 0.1 * torch.eye(k, dtype=F64)
    mean = torch.randn(k, generator=g, dtype=F64)
    y = torch.randn(l, generator=g, dtype=F64)
    post = lm.exact_posterior(A, S, y, sigma, mean=mean, cov=cov)
    B = A @ S
    prec = torch.linalg.inv(cov) + B.T @ B / sigma**2
    cov_post = torch.linalg.inv(prec)
    mean_post = cov_post @ (B.T @ y / sigma**2 + torch.linalg.solve(cov, mean))
    scale = 1 + float(cov_post.abs().max())
    assert (post.cov - cov_post).abs().max() <= 1e-9 * scale
    assert (post.mean - mean_post).abs().max() <= 1e-9 * (1 + float(mean_post.abs().max()))
    assert torch.allclose(post.pixel_mean, S @ post.mean, atol=1e-12)
    assert torch.allclose(post.pixel_cov, S @ post.cov @ S.T, atol=1e-12)


def test_batched_exact_posterior_matches_per_instance():
    A, S, _, y = problem(batch=4, seed=3)
    post = lm.exact_posterior(A, S, y, 0.3)
    for b in range(4):
        single = lm.exact_posterior(A[b], S[b], y[b], 0.3)
        assert torch.allclose(post.mean[b], single.mean, atol=1e-13)
        assert torch.allclose(post.cov[b], single.cov, atol=1e-13)


def test_noiseless_full_rank_posterior_is_the_truth():
    A, S, w0, _ = problem(seed=9)
    y = A @ S @ w0
    post = lm.exact_posterior(A, S, y, 0.0)
    assert torch.allclose(post.mean, w0, atol=1e-10)
    assert float(post.cov.abs().max()) == 0.0 and int(post.rank) == 4
    assert torch.allclose(post.pixel_mean, S @ w0, atol=1e-10)
    # the sigma -> 0 limit is continuous
    errs = [float((lm.exact_posterior(A, S, y, s).mean - w0).norm()) for s in (1e-1, 1e-3, 1e-5)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6
    assert float(lm.exact_posterior(A, S, y, 1e-5).cov.abs().max()) < 1e-8


def test_rank_deficient_posterior_keeps_the_prior_on_the_null_space():
    k, l = 5, 3
    A, S, w0, _ = problem(k=k, l=l, seed=4)
    B = A @ S
    y = B @ w0
    post = lm.exact_posterior(A, S, y, 0.0)
    P_null = torch.eye(k, dtype=F64) - torch.linalg.pinv(B) @ B
    assert int(post.rank) == l
    assert torch.allclose(post.cov, P_null, atol=1e-10)
    assert torch.allclose(P_null @ post.mean, torch.zeros(k, dtype=F64), atol=1e-10)  # prior mean 0
    assert torch.allclose(B @ post.mean, y, atol=1e-10)  # the range part is pinned by y
    # E||z - w0||^2 = ||P_null w0||^2 + (k - r)
    risk = float((post.mean - w0).norm() ** 2 + post.cov.trace())
    assert risk == pytest.approx(float((P_null @ w0).norm() ** 2) + (k - l), rel=1e-10)
    # with a non-zero prior mean, the null-space part of the mean is the prior's
    mu = torch.arange(k, dtype=F64)
    post_mu = lm.exact_posterior(A, S, y, 0.0, mean=mu)
    assert torch.allclose(P_null @ post_mu.mean, P_null @ mu, atol=1e-10)
    # small noise approaches the same limit
    assert torch.allclose(lm.exact_posterior(A, S, y, 1e-6).cov, P_null, atol=1e-6)


@given(st.integers(1, 6), st.integers(0, 8), st.integers(0, 10**6))
def test_least_squares_noiseless_recovers_truth(k, extra_l, seed):
    A, S, w0, _ = problem(d=k + extra_l + 2, k=k, l=k + extra_l, seed=seed)
    assert lm.spectrum(A, S).rank == k
    z = lm.least_squares(A, S, A @ S @ w0)
    kappa = float(lm.spectrum(A, S).kappa)
    assert (z - w0).norm() <= 1e-12 * kappa * (1 + w0.norm())


def test_least_squares_noisy_is_the_normal_equation_solution():
    A, S, w0, y = problem(batch=3, seed=2, sigma=0.5)
    z = lm.least_squares(A, S, y)
    B = A @ S
    for b in range(3):
        ref = torch.linalg.lstsq(B[b], y[b]).solution
        assert torch.allclose(z[b], ref, atol=1e-10)
        assert (B[b].T @ (B[b] @ z[b] - y[b])).abs().max() < 1e-10  # fixed point of the guided iteration


def test_least_squares_error_bound_holds():
    # ||z_LS - w0|| <= ||n|| / sqrt(s_min)  (T5)
    A, S, w0, _ = problem(batch=50, seed=6)
    n = 0.3 * torch.randn(50, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    y = torch.einsum("blk,bk->bl", A @ S, w0) + n
    err = (lm.least_squares(A, S, y) - w0).norm(dim=-1)
    assert bool((err <= n.norm(dim=-1) / lm.spectrum(A, S).s_min.sqrt() * (1 + 1e-10)).all())


def test_ridge_posterior_equals_information_form_and_tends_to_subspace_posterior():
    A, S, _, y = problem(seed=8, sigma=0.2)
    d = S.shape[0]
    exact = lm.exact_posterior(A, S, y, 0.2)
    for ridge in (0.5, 1e-3):
        Sig = S @ S.T + ridge * torch.eye(d, dtype=F64)
        rp = lm.ridge_posterior(A, Sig, y, 0.2)
        cov = torch.linalg.inv(torch.linalg.inv(Sig) + A.T @ A / 0.04)
        assert torch.allclose(rp.cov, cov, atol=1e-9)
        assert torch.allclose(rp.mean, cov @ A.T @ y / 0.04, atol=1e-9)
    rp = lm.ridge_posterior(A, S @ S.T + 1e-9 * torch.eye(d, dtype=F64), y, 0.2)
    assert torch.allclose(rp.mean, exact.pixel_mean, atol=1e-7)
    assert torch.allclose(rp.cov, exact.pixel_cov, atol=1e-7)
