"""linear_model.mixture and gmm_benchmark: closed forms against the single-Gaussian model, autograd and Monte
Carlo; the exact mixture posterior against importance sampling; the MCGdiff protocol and sliced W1."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from strategies import gen

import linear_model as lm
from linear_model.gmm_benchmark import mcgdiff_prior, mcgdiff_problem, mode_weights, sliced_wasserstein
from linear_model.mixture import GaussianMixture, GaussianMixtureLatentPrior, mixture_posterior

F64 = torch.float64


def spd(k: int, g: torch.Generator, floor: float = 0.2) -> torch.Tensor:
    X = torch.randn(k, k, generator=g, dtype=F64)
    return X @ X.T / k + floor * torch.eye(k, dtype=F64)


def three_component(k: int, g: torch.Generator, dense: bool = True) -> GaussianMixture:
    w = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
    m = 3 * torch.randn(3, k, generator=g, dtype=F64)
    if not dense:
        return GaussianMixture.isotropic(w, m)
    return GaussianMixture.from_covs(w, m, torch.stack([spd(k, g) for _ in range(3)]))


def moments(gm: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixture mean and covariance (law of total variance)."""
    mean = gm.weights @ gm.means
    second = (gm.weights[:, None, None] * (gm.covs + gm.means[:, :, None] * gm.means[:, None, :])).sum(0)
    return mean, second - mean[:, None] * mean[None, :]


@given(st.integers(1, 6), st.integers(0, 999), st.integers(0, 2**16))
def test_one_component_equals_gaussian_prior(k, t, seed):
    g = gen(seed)
    mean, cov = torch.randn(k, generator=g, dtype=F64), spd(k, g)
    gauss = lm.GaussianLatentPrior(mean, cov)
    mix = GaussianMixtureLatentPrior(GaussianMixture.from_covs(torch.ones(1, dtype=F64), mean[None], cov))
    z = 3 * torch.randn(5, k, generator=g, dtype=F64)
    for fn in ("eps", "score", "tweedie_mean"):
        want = getattr(gauss, fn)(z, t)
        assert torch.allclose(getattr(mix, fn)(z, t), want, rtol=1e-11, atol=1e-11 * float(want.abs().max()))
    m_t = mix.marginal(t)
    assert torch.allclose(m_t.covs[0], gauss.marginal(t).cov, atol=1e-12)
    assert torch.allclose(m_t.means[0], gauss.marginal(t).mean, atol=1e-12)


@given(st.integers(1, 5), st.integers(1, 4), st.floats(0.05, 2.0), st.integers(0, 2**16))
def test_one_component_posterior_equals_exact_posterior(k, l, sigma, seed):
    g = gen(seed)
    d = k + 2
    mean, cov = torch.randn(k, generator=g, dtype=F64), spd(k, g)
    A = torch.randn(l, d, generator=g, dtype=F64)
    S = lm.random_subspace(d, k, seed=g)
    y = torch.randn(l, generator=g, dtype=F64)
    ref = lm.exact_posterior(A, S, y, sigma, mean=mean, cov=cov)
    post = mixture_posterior(
        GaussianMixture.from_covs(torch.ones(1, dtype=F64), mean[None], cov), A @ S, y, sigma
    )
    assert torch.allclose(post.means[0], ref.mean, atol=1e-10)
    assert torch.allclose(post.covs[0], ref.cov, atol=1e-10)


def test_isotropic_low_rank_posterior_equals_dense_path():
    g = gen(3)
    gm = three_component(5, g, dense=False)
    dense = GaussianMixture.from_covs(gm.weights, gm.means, torch.eye(5, dtype=F64))
    B, y = torch.randn(2, 5, generator=g, dtype=F64), torch.randn(2, generator=g, dtype=F64)
    a, b = mixture_posterior(gm, B, y, 0.3), mixture_posterior(dense, B, y, 0.3)
    assert a.U.shape[-1] == 2 and b.U.shape[-1] == 5  # low rank vs full
    for x, z in ((a.weights, b.weights), (a.means, b.means), (a.covs, b.covs)):
        assert torch.allclose(x, z, atol=1e-12)


@pytest.mark.parametrize("dense", [True, False])
def test_score_is_grad_log_prob_and_tweedie_identity(dense):
    prior = GaussianMixtureLatentPrior(three_component(4, gen(1), dense))
    x = 2 * torch.randn(7, 4, generator=gen(2), dtype=F64)
    for t in (0, 300, 999):
        ab = prior.alpha_bar(t)
        xr = x.clone().requires_grad_(True)
        (gr,) = torch.autograd.grad(prior.marginal(t).log_prob(xr).sum(), xr)
        assert torch.allclose(prior.score(x, t), gr, atol=1e-12)
        assert torch.allclose(
            prior.tweedie_mean(x, t), (x + (1 - ab) * prior.score(x, t)) / ab**0.5, atol=1e-10
        )
        assert torch.allclose(prior.eps(x, t), -((1 - ab) ** 0.5) * gr, atol=1e-12)


def forward_draws(prior: GaussianMixtureLatentPrior, t: int, n: int, seed: int):
    g = gen(seed)
    x0 = prior.sample(n, g)
    ab = prior.alpha_bar(t)
    return x0, ab**0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=g, dtype=F64)


@pytest.mark.parametrize("t", [100, 400])
def test_noised_marginal_moments_match_monte_carlo(t):
    prior = GaussianMixtureLatentPrior(three_component(3, gen(4)))
    n = 40_000
    _, xt = forward_draws(prior, t, n, 5)
    mean, cov = moments(prior.marginal(t))
    se = (cov.diagonal() / n).sqrt()
    assert float(((xt.mean(0) - mean).abs() / se).max()) < 5
    C = torch.cov(xt.T)
    se_c = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    assert float(((C - cov).abs() / se_c).max()) < 5


def orthogonality_z(x0: torch.Tensor, xt: torch.Tensor, estimate: torch.Tensor) -> float:
    """Largest |z| of ``E[(x0 - estimate) f(x_t)] = 0`` for ``f in {1, x_t}`` (true for E[x0 | x_t] only)."""
    r = x0 - estimate
    feats = torch.cat([torch.ones(len(xt), 1, dtype=F64), xt], 1)
    prod = r[:, :, None] * feats[:, None, :]
    z = prod.mean(0) / (prod.std(0) / len(xt) ** 0.5)
    return float(z.abs().max())


def test_tweedie_and_score_against_monte_carlo():
    """Tweedie: the residual x0 - E[x0|x_t] is orthogonal to functions of x_t (a plain Gaussian Tweedie
    sqrt(ab) x_t is not: the negative control). Score: Stein's identity E[score(x_t) x_t^T] = -I."""
    prior = GaussianMixtureLatentPrior(three_component(3, gen(6)))
    t, n = 300, 40_000
    x0, xt = forward_draws(prior, t, n, 7)
    assert orthogonality_z(x0, xt, prior.tweedie_mean(xt, t)) < 5
    assert orthogonality_z(x0, xt, prior.alpha_bar(t) ** 0.5 * xt) > 20
    stein = prior.score(xt, t)[:, :, None] * xt[:, None, :]
    z = (stein.mean(0) + torch.eye(3, dtype=F64)) / (stein.std(0) / n**0.5)
    assert float(z.abs().max()) < 5


def test_posterior_against_importance_sampling():
    """Prior draws weighted by N(y; B x, sigma^2): weighted component masses, mean and covariance."""
    g = gen(8)
    gm = three_component(2, g)
    B, sigma = torch.randn(1, 2, generator=g, dtype=F64), 0.7
    y = B @ gm.means[1] + 0.3
    post = mixture_posterior(gm, B, y, sigma)
    n = 400_000
    x, j = gm.sample(n, gen(9), labels=True)
    w = torch.exp(-0.5 * ((x @ B.T - y) ** 2).sum(1) / sigma**2)
    w = w / w.sum()
    ess = 1 / float((w**2).sum())
    mass = torch.zeros(3, dtype=F64).index_add_(0, j, w)
    assert torch.allclose(mass, post.weights, atol=5 * (0.25 / ess) ** 0.5)
    mean, cov = moments(post)
    se = (cov.diagonal() / ess).sqrt()
    assert float(((w @ x - mean).abs() / se).max()) < 5
    c = x - mean
    wc = (w[:, None, None] * c[:, :, None] * c[:, None, :]).sum(0)
    assert torch.allclose(wc, cov, atol=5 * float(cov.abs().max()) * (2 / ess) ** 0.5)


def test_posterior_sampler_is_exact():
    post = mixture_posterior(
        three_component(3, gen(10)),
        torch.randn(2, 3, generator=gen(11), dtype=F64),
        torch.tensor([1.0, -2.0], dtype=F64),
        0.4,
    )
    n = 50_000
    x, j = post.sample(n, gen(12), labels=True)
    counts = torch.bincount(j, minlength=3).to(F64)
    assert stats.chisquare(counts.numpy(), (n * post.weights).numpy()).pvalue > 1e-3
    mean, cov = moments(post)
    assert float(((x.mean(0) - mean).abs() / (cov.diagonal() / n).sqrt()).max()) < 5
    checked = 0
    for c in range(3):  # per component covariance, including the low-rank square root
        sel = x[j == c] - post.means[c]
        if sel.shape[0] < 2000:
            continue
        checked += 1
        assert torch.allclose(torch.cov(sel.T), post.covs[c], atol=6 * (2 / sel.shape[0]) ** 0.5)
    assert checked >= 2


def test_mcgdiff_protocol():
    p = mcgdiff_problem(8, 2, gen(13))
    assert p.prior.K == 25 and torch.allclose(p.prior.weights.sum(), torch.ones((), dtype=F64))
    assert p.prior.means[0].tolist() == [16.0, 16.0] * 4 and p.prior.means[24].tolist() == [-16.0, -16.0] * 4
    s = torch.linalg.svdvals(p.A)
    assert (
        torch.allclose(s, p.singular_values, atol=1e-12) and bool((s[:-1] >= s[1:]).all()) and float(s[0]) < 1
    )
    assert 0 <= p.sigma_y <= float(s[0])
    assert p.posterior.K == 25 and 1.0 <= p.posterior.effective_modes() <= 25
    with pytest.raises(ValueError, match="even"):
        mcgdiff_prior(7)
    with pytest.raises(ValueError, match="d_y"):
        mcgdiff_problem(4, 6)


def test_sliced_wasserstein():
    g = gen(14)
    a = torch.randn(300, 4, generator=g, dtype=F64)
    v = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)
    u = torch.randn(50, 4, generator=gen(15), dtype=F64)
    u = u / u.norm(dim=1, keepdim=True)
    # a pure shift moves every 1-D quantile by <v, u_k>
    assert sliced_wasserstein(a, a + v, 50, gen(15)) == pytest.approx(float((u @ v).abs().mean()), rel=1e-12)
    b = torch.randn(170, 4, generator=g, dtype=F64) + 0.3
    want = sum(stats.wasserstein_distance((a @ uk).numpy(), (b @ uk).numpy()) for uk in u) / 50
    assert sliced_wasserstein(a, b, 50, gen(15)) == pytest.approx(want, rel=1e-10)


def test_mode_weights_and_bad_input():
    gm = GaussianMixture.isotropic(
        torch.tensor([0.5, 0.5], dtype=F64), torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    )
    x = torch.tensor([[1.0, 0.0], [9.0, 1.0], [8.0, 0.0], [2.0, 2.0]], dtype=F64)
    assert mode_weights(x, gm).tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture.isotropic(torch.tensor([0.5, 0.6]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="semi-definite"):
        GaussianMixture.from_covs(torch.ones(1), torch.zeros(1, 2), -torch.eye(2))
    with pytest.raises(ValueError, match=r"x must be \[N, d=2\]"):
        gm.score(torch.zeros(3))
