"""linear_model.prior: exact latent and pixel diffusion priors against closed forms and Monte Carlo."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linear_model as lm
from psld.protocols import LatentPrior
from psld.schedule import make_alphas_cumprod

F64 = torch.float64


def random_spd(k, g, floor=0.2):
    X = torch.randn(k, k, generator=g, dtype=F64)
    return X @ X.T / k + floor * torch.eye(k, dtype=F64)


def affine_map(fn, k):
    """``fn`` is affine: recover ``(W, b)`` with ``fn(z) = W z + b`` by probing."""
    b = fn(torch.zeros(1, k, dtype=F64))[0]
    W = (fn(torch.eye(k, dtype=F64)) - b).T
    return W, b


def assert_regression_matches(target, z_t, fn, n_sd=5.0):
    """Regress ``target`` on ``[z_t, 1]`` and compare with the affine ``fn`` coefficient by coefficient,
    within ``n_sd`` standard errors ``sqrt(resid_var_i [(X^T X)^{-1}]_jj)``."""
    n, k = z_t.shape
    X = torch.cat([z_t, torch.ones(n, 1, dtype=F64)], 1)
    coef = torch.linalg.lstsq(X, target).solution  # [k+1, out]
    W, b = affine_map(fn, k)
    expected = torch.cat([W.T, b[None]], 0)
    resid = target - X @ coef
    resid_var = resid.var(0)  # [out]
    se = (torch.linalg.inv(X.T @ X).diagonal()[:, None] * resid_var[None, :]).sqrt()
    z = (coef - expected).abs() / se
    assert float(z.max()) < n_sd, f"max |z| = {float(z.max()):.2f}"


def assert_cov_matches(samples, cov, n_sd=5.0):
    n = samples.shape[0]
    emp = torch.cov(samples.T)
    sd = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    z = (emp - cov).abs() / sd
    assert float(z.max()) < n_sd, f"max |z| = {float(z.max()):.2f}"


@pytest.mark.parametrize("t", [3, 120, 600])
def test_tweedie_eps_score_match_monte_carlo_conditional_means(t):
    g = torch.Generator().manual_seed(t)
    k, n = 3, 40000
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    cov = random_spd(k, g)
    prior = lm.GaussianLatentPrior(mean, cov)
    ab = float(prior.alphas_cumprod[t])
    z0 = prior.sample(n, generator=g)
    noise = torch.randn(n, k, generator=g, dtype=F64)
    z_t = ab**0.5 * z0 + (1 - ab) ** 0.5 * noise
    assert_regression_matches(z0, z_t, lambda z: prior.tweedie_mean(z, t))
    assert_regression_matches(noise, z_t, lambda z: prior.eps(z, t))
    assert_regression_matches(-noise / (1 - ab) ** 0.5, z_t, lambda z: prior.score(z, t))
    # forward marginal and posterior covariance
    m, C = prior.marginal(t)
    assert (z_t.mean(0) - m).abs().max() < 5 * (C.diagonal().max() / n) ** 0.5
    assert_cov_matches(z_t, C)
    assert_cov_matches(z0 - prior.tweedie_mean(z_t, t), prior.tweedie_cov(t))


@given(st.integers(1, 6), st.integers(0, 999), st.integers(0, 10**6))
def test_latent_closed_forms_equal_independent_formulas(k, t, seed):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(k, generator=g, dtype=F64)
    cov = random_spd(k, g, floor=0.05)
    prior = lm.GaussianLatentPrior(mean, cov)
    ab = float(make_alphas_cumprod("linear")[t])
    z = torch.randn(4, k, generator=g, dtype=F64)
    C = ab * cov + (1 - ab) * torch.eye(k, dtype=F64)
    centered = (z - ab**0.5 * mean).T
    z0_hat = (mean[:, None] + ab**0.5 * cov @ torch.linalg.solve(C, centered)).T
    eps_def = (z - ab**0.5 * z0_hat) / (1 - ab) ** 0.5
    eps_direct = ((1 - ab) ** 0.5 * torch.linalg.solve(C, centered)).T
    tol = 1e-10 * (1 + eps_direct.abs().max())
    assert (prior.eps(z, t) - eps_def).abs().max() < tol
    assert (prior.eps(z, t) - eps_direct).abs().max() < tol
    assert (prior.tweedie_mean(z, t) - z0_hat).abs().max() < 1e-10 * (1 + z0_hat.abs().max())
    post_cov = torch.linalg.inv(torch.linalg.inv(cov) + ab / (1 - ab) * torch.eye(k, dtype=F64))
    assert torch.allclose(prior.tweedie_cov(t), post_cov, rtol=1e-9, atol=1e-12)
    assert torch.allclose(prior.tweedie_matrix(t), ab**0.5 * cov @ torch.linalg.inv(C), rtol=1e-9, atol=1e-12)
    # score is the gradient of the marginal log-density (autograd, independent of the closed form)
    zr = z.clone().requires_grad_(True)
    logp = torch.distributions.MultivariateNormal(ab**0.5 * mean, C).log_prob(zr).sum()
    (grad,) = torch.autograd.grad(logp, zr)
    assert torch.allclose(prior.score(z, t), grad, rtol=1e-9, atol=1e-10)


def test_default_prior_is_standard_normal_on_linear_schedule_and_a_latent_prior():
    prior = lm.GaussianLatentPrior(k=4)
    assert isinstance(prior, LatentPrior)
    assert torch.equal(prior.alphas_cumprod, make_alphas_cumprod("linear"))
    z = torch.randn(3, 4, dtype=F64)
    for t in (0, 500, 999):
        ab = float(prior.alphas_cumprod[t])
        assert torch.allclose(prior.eps(z, t), (1 - ab) ** 0.5 * z, rtol=1e-14)
        assert torch.allclose(prior.score(z, t), -z)
        assert torch.allclose(prior.tweedie_mean(z, t), ab**0.5 * z, rtol=1e-14)
    assert prior.eps(z, torch.tensor(7)).shape == z.shape  # 0-d tensor timestep


def test_eps_is_differentiable_with_the_exact_jacobian():
    g = torch.Generator().manual_seed(0)
    cov = random_spd(3, g)
    prior = lm.GaussianLatentPrior(cov=cov, alphas_cumprod=make_alphas_cumprod("scaled_linear", 100))
    z = torch.randn(2, 3, generator=g, dtype=F64, requires_grad=True)
    t = 40
    J = torch.autograd.functional.jacobian(lambda v: prior.eps(v, t)[0], z)[:, 0, :]
    ab = float(prior.alphas_cumprod[t])
    C = ab * cov + (1 - ab) * torch.eye(3, dtype=F64)
    assert torch.allclose(J, (1 - ab) ** 0.5 * torch.linalg.inv(C), rtol=1e-10)


def test_batched_prior_matches_per_instance_priors():
    g = torch.Generator().manual_seed(1)
    covs = torch.stack([random_spd(3, g) for _ in range(4)])
    means = torch.randn(4, 3, generator=g, dtype=F64)
    batched = lm.GaussianLatentPrior(means, covs)
    z = torch.randn(4, 5, 3, generator=g, dtype=F64)
    for b in range(4):
        single = lm.GaussianLatentPrior(means[b], covs[b])
        for fn in ("eps", "score", "tweedie_mean"):
            assert torch.allclose(getattr(batched, fn)(z, 77)[b], getattr(single, fn)(z[b], 77), atol=1e-13)
        assert torch.allclose(batched.marginal(77).cov[b], single.marginal(77).cov)
    assert batched.sample(generator=0).shape == (4, 3)


def test_singular_latent_covariance_is_allowed():
    cov = torch.diag(torch.tensor([1.0, 0.0], dtype=F64))
    prior = lm.GaussianLatentPrior(cov=cov)
    z = torch.tensor([[1.0, 1.0]], dtype=F64)
    ab = float(prior.alphas_cumprod[100])
    assert torch.allclose(prior.tweedie_mean(z, 100), torch.tensor([[ab**0.5, 0.0]], dtype=F64))


# ---------------------------------------------------------------------------------------- pixel prior
@given(st.integers(1, 6), st.integers(0, 30), st.integers(0, 999), st.integers(0, 10**6))
def test_pixel_exact_tweedie_is_the_projector(k, extra, t, seed):
    d = k + extra
    S = lm.random_subspace(d, k, seed=seed)
    prior = lm.PixelSubspacePrior(S)
    ab = float(prior.alphas_cumprod[t])
    x = torch.randn(3, d, generator=torch.Generator().manual_seed(seed + 7919), dtype=F64)
    P = S @ S.T
    assert (prior.tweedie_mean(x, t) - ab**0.5 * x @ P).abs().max() <= 1e-12
    score = prior.score(x, t)
    expected = -(x @ P) - (x - x @ P) / (1 - ab)
    amplified = 1e-12 / (1 - ab)  # round-off in (I - P) x is multiplied by the off-subspace gain
    assert torch.allclose(score, expected, rtol=1e-12, atol=amplified)
    assert torch.allclose(prior.eps(x, t), -((1 - ab) ** 0.5) * score, rtol=1e-12, atol=amplified)
    if extra > 0:  # off-subspace gain 1/(1 - ab) (docs/theory.md §5.1)
        off_x, off_s = x - x @ P, score - score @ P
        keep = off_x.norm(dim=1) > 1e-6
        ratio = off_s.norm(dim=1)[keep] / off_x.norm(dim=1)[keep]
        assert torch.allclose(ratio, torch.full_like(ratio, 1 / (1 - ab)), rtol=1e-9)


def test_pixel_and_latent_priors_agree_on_the_subspace():
    S = lm.random_subspace(12, 3, seed=0)
    pix, lat = lm.PixelSubspacePrior(S), lm.GaussianLatentPrior(k=3)
    z = torch.randn(5, 3, dtype=F64)
    for t in (0, 250, 999):
        assert torch.allclose(pix.tweedie_mean(z @ S.T, t) @ S, lat.tweedie_mean(z, t), atol=1e-14)
        assert torch.allclose(pix.eps(z @ S.T, t), lat.eps(z, t) @ S.T, atol=1e-14)
    assert isinstance(pix, LatentPrior)


def test_pixel_ridge_tweedie_matches_dense_formula_and_gains():
    S = lm.random_subspace(10, 3, seed=1)
    P = S @ S.T
    eye = torch.eye(10, dtype=F64)
    x = torch.randn(4, 10, dtype=F64)
    for ridge in (1e-3, 0.5):
        prior = lm.PixelSubspacePrior(S, ridge=ridge)
        for t in (0, 10, 700):
            ab = float(prior.alphas_cumprod[t])
            Sig = P + ridge * eye
            V = ab**0.5 * Sig @ torch.linalg.inv(ab * Sig + (1 - ab) * eye)
            g_in, g_off = lm.ridge_gains(ab, ridge)
            assert torch.allclose(V, g_in * P + g_off * (eye - P), atol=1e-11)
            assert torch.allclose(prior.tweedie_mean(x, t), x @ V.T, atol=1e-11)
            assert torch.allclose(prior.tweedie_matrix(t), V, atol=1e-11)
            score = -(x @ torch.linalg.inv(ab * Sig + (1 - ab) * eye).T)
            assert torch.allclose(prior.score(x, t), score, rtol=1e-9, atol=1e-9)


def test_pixel_ridge_tweedie_tends_to_projector():
    S = lm.random_subspace(10, 3, seed=2)
    x = torch.randn(4, 10, dtype=F64)
    exact = lm.PixelSubspacePrior(S).tweedie_mean(x, 300)
    ab = float(make_alphas_cumprod("linear")[300])
    errs = []
    for ridge in (1e-2, 1e-4, 1e-6, 1e-8):
        err = float((lm.PixelSubspacePrior(S, ridge=ridge).tweedie_mean(x, 300) - exact).abs().max())
        assert err <= 2 * ridge / (1 - ab) * float(x.abs().sum(1).max())
        errs.append(err)
    assert all(a > b for a, b in zip(errs, errs[1:], strict=False))


def test_pixel_general_basis_score():
    g = torch.Generator().manual_seed(3)
    S = torch.randn(8, 3, generator=g, dtype=F64)
    prior = lm.PixelSubspacePrior(S)
    assert not prior.orthonormal
    x = torch.randn(5, 8, generator=g, dtype=F64)
    for t in (5, 400):
        ab = float(prior.alphas_cumprod[t])
        C = ab * S @ S.T + (1 - ab) * torch.eye(8, dtype=F64)
        assert torch.allclose(prior.score(x, t), -torch.linalg.solve(C, x.T).T, rtol=1e-8, atol=1e-8)
        V = ab**0.5 * S @ S.T @ torch.linalg.inv(C)
        assert torch.allclose(prior.tweedie_mean(x, t), x @ V.T, atol=1e-10)


def test_pixel_ridge_tweedie_matches_monte_carlo():
    S = lm.random_subspace(5, 2, seed=4)
    prior = lm.PixelSubspacePrior(S, ridge=0.3)
    g = torch.Generator().manual_seed(5)
    n, t = 40000, 200
    ab = float(prior.alphas_cumprod[t])
    x0 = torch.randn(n, 5, generator=g, dtype=F64) @ torch.linalg.cholesky(prior.cov).T
    noise = torch.randn(n, 5, generator=g, dtype=F64)
    x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * noise
    assert_regression_matches(x0, x_t, lambda x: prior.tweedie_mean(x, t))
    assert_regression_matches(noise, x_t, lambda x: prior.eps(x, t))


def test_batched_pixel_prior():
    S = lm.random_subspace(6, 2, seed=0, batch=3)
    prior = lm.PixelSubspacePrior(S, ridge=0.1)
    x = torch.randn(3, 4, 6, dtype=F64)
    out = prior.tweedie_mean(x, 50)
    for b in range(3):
        single = lm.PixelSubspacePrior(S[b], ridge=0.1)
        assert torch.allclose(out[b], single.tweedie_mean(x[b], 50), atol=1e-14)
