"""linear_model.predictions and two_state: closed forms against direct iteration and Monte Carlo.

Convention (docs/theory.md §1.2): squared losses without 1/2, so grad ||J z - b||^2 = 2 J^T (J z - b).
"""

import itertools

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import linear_model as lm
from psld.schedule import make_alphas_cumprod

F64 = torch.float64


@st.composite
def instances(draw):
    k = draw(st.integers(1, 8))
    l = draw(st.integers(k, 3 * k))
    d = draw(st.integers(l + 1, 48))
    seed = draw(st.integers(0, 10**6))
    S = lm.random_subspace(d, k, seed=seed)
    A = lm.gaussian_matrix(l, d, seed=seed + 1)
    w0 = torch.randn(k, generator=torch.Generator().manual_seed(seed + 2), dtype=F64)
    sp = lm.spectrum(A, S)
    assume(float(sp.kappa) < 1e4)
    return A, S, w0, sp


def fixed_point_iterates(A, S, w0, omega, gamma, c, n, z=None):
    """``z <- z - omega grad L - gamma grad G`` with ``z0hat = c z``, PSLD glue, noiseless y; returns the
    errors ``e_n = c z_n - w0`` for n = 0..n. Gradients written out with matrices."""
    B = A @ S
    M = B.T @ B
    y = B @ w0
    z = torch.zeros_like(w0) if z is None else z
    errs = [c * z - w0]
    for _ in range(n):
        grad_L = 2 * c * B.T @ (B @ (c * z) - y)
        glue = S.T @ (A.T @ y + (torch.eye(A.shape[1], dtype=F64) - A.T @ A) @ (S @ (c * z)))
        r_glue = c * z - glue  # = M (c z) - B^T y
        grad_G = 2 * c * M.T @ r_glue
        z = z - omega * grad_L - gamma * grad_G
        errs.append(c * z - w0)
    return torch.stack(errs)


@given(instances(), st.floats(0.05, 0.95), st.floats(0.0, 0.5), st.sampled_from([1.0, 0.5**0.5]))
def test_fixed_point_error_obeys_the_contraction_envelope(inst, w_frac, g_frac, c):
    A, S, w0, sp = inst
    s_max = float(sp.s_max)
    gamma = g_frac / (c**2 * s_max**2)
    omega = w_frac * float(lm.latent_step_bound(s_max, c, gamma))
    rho = float(lm.contraction_rate(sp.eigvals, omega, gamma, c))
    assert rho < 1
    e = fixed_point_iterates(A, S, w0, omega, gamma, c, 30)
    norms = e.norm(dim=1)
    bound = rho ** torch.arange(31, dtype=F64) * norms[0] * (1 + 1e-9) + 1e-12
    assert bool((norms <= bound).all())
    # equality along the maximising eigenvector
    lam, Q = torch.linalg.eigh(lm.latent_gram(A, S))
    h = omega * lam + gamma * lam**2
    j = int((1 - 2 * c**2 * h).abs().argmax())
    e_q = fixed_point_iterates(A, S, w0, omega, gamma, c, 10, z=(w0 + Q[:, j]) / c)
    assert torch.allclose(e_q.norm(dim=1), rho ** torch.arange(11, dtype=F64), rtol=1e-7, atol=1e-12)


@given(instances(), st.floats(0.01, 0.5))
def test_above_the_bound_the_top_eigencomponent_grows_exactly(inst, delta):
    A, S, w0, sp = inst
    s_max = float(sp.s_max)
    omega = (1 + delta) / s_max
    lam, Q = torch.linalg.eigh(lm.latent_gram(A, S))
    q = Q[:, -1]
    e = fixed_point_iterates(A, S, w0, omega, 0.0, 1.0, 12, z=w0 + 0.3 * q + 0.1 * Q[:, 0])
    proj = e @ q
    expected = (1 - 2 * omega * float(lam[-1])) ** torch.arange(13, dtype=F64) * proj[0]
    assert torch.allclose(proj, expected, rtol=1e-8, atol=1e-12)
    assert float(lm.contraction_rate(sp.eigvals, omega, 0.0)) > 1


@given(st.floats(0.1, 10.0), st.floats(0.0, 0.99) | st.floats(1.01, 2.0), st.sampled_from([1.0, 0.3]))
def test_latent_step_bound_is_the_contraction_boundary(s_max, g_frac, c):
    eigs = torch.tensor([0.01 * s_max, 0.5 * s_max, s_max], dtype=F64)
    gamma = g_frac / (c**2 * s_max**2)
    bound = float(lm.latent_step_bound(s_max, c, gamma))
    if g_frac >= 1:  # no omega >= 0 contracts
        assert bound == 0.0
        assert float(lm.contraction_rate(eigs, 1e-9, gamma, c)) >= 1 - 1e-6
        return
    assert c**2 * (bound * s_max + gamma * s_max**2) == pytest.approx(1.0, rel=1e-12)
    assert float(lm.contraction_rate(eigs, bound * (1 - 1e-9), gamma, c)) < 1
    assert float(lm.contraction_rate(eigs, bound * (1 + 1e-6) + 1e-9, gamma, c)) > 1


@given(instances())
def test_best_ldps_step_is_optimal_with_rate_kappa(inst):
    _, _, _, sp = inst
    kappa = float(sp.kappa)
    assume(kappa > 1 + 1e-6)
    best = float(lm.best_ldps_step(sp.s_min, sp.s_max))
    rho = float(lm.contraction_rate(sp.eigvals, best, 0.0))
    assert rho == pytest.approx((kappa - 1) / (kappa + 1), rel=1e-9, abs=1e-12)
    grid = torch.linspace(0.0, float(lm.latent_step_bound(sp.s_max)), 2001, dtype=F64)
    rates = lm.contraction_rate(sp.eigvals[None, :], grid[:, None], 0.0)
    assert float(rates.min()) >= rho - 1e-12


@given(st.integers(1, 8), st.integers(0, 8), st.floats(0.2, 5.0), st.integers(0, 10**6), st.floats(0.01, 0.2))
def test_one_shot_step_recovers_only_at_the_unique_step(k, extra, s, seed, delta):
    l, d = k + extra, k + extra + 5
    S = lm.random_subspace(d, k, seed=seed)
    A = lm.isotropic_matrix(S, s, l, seed=seed + 1)
    assert torch.allclose(lm.latent_gram(A, S), s * torch.eye(k, dtype=F64), atol=1e-10)
    g = torch.Generator().manual_seed(seed + 2)
    w0, z1 = torch.randn(k, generator=g, dtype=F64), torch.randn(k, generator=g, dtype=F64)
    B = A @ S
    y = B @ w0

    def step(omega):
        return z1 - omega * 2 * B.T @ (B @ z1 - y)

    star = float(lm.one_shot_step(s))
    assert float((step(star) - w0).norm()) < 1e-10
    for sgn in (1, -1):
        err = float((step(star * (1 + sgn * delta)) - w0).norm())
        assert err == pytest.approx(delta * float((z1 - w0).norm()), rel=1e-8)


def test_no_scalar_one_shot_step_for_anisotropic_m():
    S = lm.random_subspace(32, 8, seed=0)
    A = lm.gaussian_matrix(12, 32, seed=1)
    B = A @ S
    M = B.T @ B
    assert float(lm.spectrum(A, S).kappa) > 10
    w0 = torch.randn(8, dtype=F64)
    z1 = torch.randn(8, dtype=F64)
    y = B @ w0
    grad = 2 * B.T @ (B @ z1 - y)
    omegas = torch.linspace(0, 2 / float(torch.linalg.eigvalsh(M)[-1]), 4001, dtype=F64)
    errs = (z1[None] - omegas[:, None] * grad[None] - w0).norm(dim=1)
    assert float(errs.min()) > 0.1 * float((z1 - w0).norm())
    newton = z1 - torch.linalg.solve(2 * M, grad)
    assert float((newton - w0).norm()) < 1e-10


# ------------------------------------------------------------------------------ T7 eigen-recursion
def guided_chain(prior, A, S, y, omega, gamma, z_T, *, ddpm, generator=None):
    """A literal k-dim guided chain over every training step: unconditional DDIM/DDPM step of the exact
    prior (via its eps), minus ``omega grad L + gamma grad G`` with autograd gradients w.r.t. ``z_t``.
    Returns the states ``z_t`` for t = T..0 (index = theory t)."""
    ac = prior.alphas_cumprod
    T = ac.numel()
    E, D = S.T, S
    eye_d = torch.eye(S.shape[0], dtype=F64)
    z = z_T
    states = {T: z}
    for t in range(T, 0, -1):
        ab = float(ac[t - 1])
        ab_prev = float(ac[t - 2]) if t >= 2 else 1.0
        zr = z.detach().requires_grad_(True)
        eps = prior.eps(zr, t - 1)
        z0 = (zr - (1 - ab) ** 0.5 * eps) / ab**0.5
        x0 = z0 @ D.T
        loss = ((y - x0 @ A.T) ** 2).sum()
        glue_target = y @ A + x0 @ (eye_d - A.T @ A).T
        glue = ((z0 - glue_target @ E.T) ** 2).sum()
        grad = torch.autograd.grad(omega * loss + gamma * glue, zr)[0]
        z0, eps = z0.detach(), eps.detach()
        if ddpm:
            beta = 1 - ab / ab_prev
            c1 = ab_prev**0.5 * beta / (1 - ab)
            c2 = (ab / ab_prev) ** 0.5 * (1 - ab_prev) / (1 - ab)
            var = (1 - ab_prev) * beta / (1 - ab)
            xi = torch.randn(z.shape, generator=generator, dtype=F64)
            z_prev = c1 * z0 + c2 * z + var**0.5 * xi
        else:
            z_prev = ab_prev**0.5 * z0 + (1 - ab_prev) ** 0.5 * eps
        z = z_prev - grad
        states[t - 1] = z
    return states


def chain_instance(seed=0, d=10, k=4, l=6):
    S = lm.random_subspace(d, k, seed=seed)
    A = lm.gaussian_matrix(l, d, seed=seed + 1)
    w0 = torch.randn(k, generator=torch.Generator().manual_seed(seed + 2), dtype=F64)
    lam, Q = torch.linalg.eigh(lm.latent_gram(A, S))
    return A, S, w0, lam, Q


@pytest.mark.parametrize("w_frac,g_frac", [(0.5, 0.0), (0.3, 0.1), (1.2, 0.0)])
def test_ddim_recursion_equals_literal_chain(w_frac, g_frac):
    A, S, w0, lam, Q = chain_instance()
    s_max = float(lam[-1])
    omega, gamma = w_frac / s_max, g_frac / s_max**2
    ac = make_alphas_cumprod("linear", 80)
    prior = lm.GaussianLatentPrior(k=4, alphas_cumprod=ac)
    y = A @ S @ w0
    starts = torch.cat([torch.zeros(1, 4, dtype=F64), Q.T], 0)  # z_T = 0 and z_T = q_j
    states = guided_chain(prior, A, S, y, omega, gamma, starts, ddpm=False)
    w = Q.T @ w0
    traj = lm.eigen_recursion_trajectory(lam, w, ac, omega, gamma, ddpm=False)
    a, _, _ = lm.recursion_coefficients(lam, ac, omega, gamma, ddpm=False)
    for t in (80, 40, 1, 0):
        g = states[t][0] @ Q  # from z_T = 0: the mean path
        assert torch.allclose(g, traj.m[t], rtol=1e-10, atol=1e-10 * float(w.abs().max()))
        F = (states[t][1:] - states[t][0]) @ Q  # row j: response to z_T = q_j, in the eigenbasis
        gain = torch.prod(a[t:], 0)  # a_T ... a_{t+1}
        assert torch.allclose(F, torch.diag(gain), rtol=1e-10, atol=1e-10 * float(gain.abs().max()))
        assert torch.allclose(gain**2, traj.v[t], rtol=1e-10)
        assert torch.allclose(F.diagonal() ** 2, traj.v[t], rtol=1e-9, atol=1e-10 * float(traj.v[t].max()))
    m, v = lm.eigen_recursion(lam, w, ac, omega, gamma, ddpm=False)
    assert torch.equal(m, traj.m[0]) and torch.equal(v, traj.v[0])
    assert torch.equal(traj.m[80], torch.zeros(4, dtype=F64))
    assert torch.equal(traj.v[80], torch.ones(4, dtype=F64))


def test_ddpm_recursion_matches_monte_carlo_of_literal_chain():
    A, S, w0, lam, Q = chain_instance(seed=3)
    omega, gamma = 0.5 / float(lam[-1]), 0.02 / float(lam[-1]) ** 2
    ac = make_alphas_cumprod("linear", 50)
    prior = lm.GaussianLatentPrior(k=4, alphas_cumprod=ac)
    g = torch.Generator().manual_seed(0)
    N = 3000
    z_T = torch.randn(N, 4, generator=g, dtype=F64)
    z0 = guided_chain(prior, A, S, A @ S @ w0, omega, gamma, z_T, ddpm=True, generator=g)[0]
    w = Q.T @ w0
    m, v = lm.eigen_recursion(lam, w, ac, omega, gamma, ddpm=True)
    u = z0 @ Q
    assert bool(((u.mean(0) - m).abs() <= 5 * (v / N).sqrt()).all())
    assert bool(((u.var(0) - v).abs() <= 5 * v * (2 / N) ** 0.5).all())
    sq = ((z0 - w0) ** 2).sum(1)
    pred = float(lm.expected_error_ddpm(lam, w, ac, omega, gamma))
    assert abs(float(sq.mean()) - pred) <= 5 * float(sq.std()) / N**0.5
    # DDIM's expected error over the random start is (m - w)^2 + v as well
    mi, vi = lm.eigen_recursion(lam, w, ac, omega, gamma, ddpm=False)
    ddim_err = float(lm.expected_error(lam, w, ac, omega, gamma, ddpm=False))
    assert ddim_err == pytest.approx(float(((mi - w) ** 2 + vi).sum()), rel=1e-12)


def test_recursion_predicts_the_finite_t_blow_up():
    lam = torch.tensor([0.2, 1.0, 2.0], dtype=F64)
    w = torch.tensor([1.0, -0.5, 0.3], dtype=F64)
    ac = make_alphas_cumprod("linear")
    errs = [float(lm.expected_error_ddpm(lam, w, ac, f / 2.0, 0.0)) for f in (0.5, 0.9, 1.5, 2.0)]
    assert errs[0] < 0.05 and errs[1] < 0.05
    assert errs[2] > 1e3 * errs[1] and errs[3] > errs[2]


# ---------------------------------------------------------------------------------- T9 and T6.3
@pytest.mark.parametrize("d,k", [(6, 2), (5, 3)])
def test_mask_recovery_probability_by_enumeration(d, k):
    S = lm.coordinate_basis(d, k, seed=1)
    eye = torch.eye(d, dtype=F64)
    for l in range(0, d + 1):
        masks = [eye[list(rows)] for rows in itertools.combinations(range(d), l)] if l > 0 else []
        if not masks:
            assert lm.mask_recovery_probability(d, k, l) == (1.0 if k == 0 else 0.0)
            continue
        rank = lm.spectrum(torch.stack(masks), S.expand(len(masks), d, k)).rank
        frac = float((rank == k).to(F64).mean())
        assert lm.mask_recovery_probability(d, k, l) == pytest.approx(frac, abs=1e-12)


@pytest.mark.parametrize("l", [2, 10, 18, 24, 30])
def test_mask_recovery_probability_by_monte_carlo(l):
    d, k, N = 30, 4, 2000
    S = lm.coordinate_basis(d, k, seed=l)
    A = lm.row_mask_matrix(l, d, seed=100 + l, batch=N)
    success = (lm.spectrum(A, S.expand(N, d, k)).rank == k).to(F64).mean()
    p = lm.mask_recovery_probability(d, k, l)
    if l < k:
        assert p == 0.0 and float(success) == 0.0
    else:
        assert abs(float(success) - p) <= 3 * (p * (1 - p) / N) ** 0.5 + 1e-12


def test_gaussian_rank_transition_is_sharp_at_l_equals_k():
    d, k = 20, 5
    S = lm.random_subspace(d, k, seed=0)
    for l, expect in ((k - 1, 0), (k, 1), (k + 2, 1)):
        rank = lm.spectrum(lm.gaussian_matrix(l, d, seed=l, batch=50), S.expand(50, d, k)).rank
        assert bool(((rank == k) == bool(expect)).all())


def test_off_manifold_energy_of_a_stopped_pixel_chain():
    d, k, N, t_min = 20, 4, 400, 20
    S = lm.random_subspace(d, k, seed=0)
    prior = lm.PixelSubspacePrior(S)
    ac = prior.alphas_cumprod
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, d, generator=g, dtype=F64)
    for t in range(ac.numel(), t_min, -1):  # DDPM with the exact pixel prior, from T down to t_min
        ab, ab_prev = float(ac[t - 1]), float(ac[t - 2])
        beta = 1 - ab / ab_prev
        x0 = prior.tweedie_mean(x, t - 1)
        c1 = ab_prev**0.5 * beta / (1 - ab)
        c2 = (ab / ab_prev) ** 0.5 * (1 - ab_prev) / (1 - ab)
        var = (1 - ab_prev) * beta / (1 - ab)
        x = c1 * x0 + c2 * x + var**0.5 * torch.randn(x.shape, generator=g, dtype=F64)
    off = ((x - x @ prior.P) ** 2).sum(1)
    pred = float(lm.off_manifold_energy(d, k, ac[t_min - 1]))
    assert abs(float(off.mean()) - pred) <= 5 * pred * (2 / ((d - k) * N)) ** 0.5


# -------------------------------------------------------------------------------------- §5.3 risks
def test_risks_match_exact_posterior_and_monte_carlo():
    d, k, l, sigma, N = 16, 4, 6, 0.3, 4000
    S = lm.random_subspace(d, k, seed=0)
    A = lm.gaussian_matrix(l, d, seed=1)
    sp = lm.spectrum(A, S)
    y0 = torch.zeros(l, dtype=F64)
    assert float(lm.posterior_mean_risk(sp.eigvals, sigma)) == pytest.approx(
        float(lm.exact_posterior(A, S, y0, sigma).cov.trace()), rel=1e-10
    )
    g = torch.Generator().manual_seed(2)
    w0 = torch.randn(N, k, generator=g, dtype=F64)
    y = lm.measure(A, w0 @ S.T, sigma, generator=g)
    ls_err = ((lm.least_squares(A, S, y) - w0) ** 2).sum(1)
    pm_err = ((lm.exact_posterior(A, S, y, sigma).mean - w0) ** 2).sum(1)
    ls_pred = float(lm.least_squares_risk(sp.eigvals, sigma))
    pm_pred = float(lm.posterior_mean_risk(sp.eigvals, sigma))
    assert abs(float(ls_err.mean()) - ls_pred) <= 5 * float(ls_err.std()) / N**0.5
    assert abs(float(pm_err.mean()) - pm_pred) <= 5 * float(pm_err.std()) / N**0.5
    assert ls_pred > pm_pred


# ------------------------------------------------------------------------------------ T6 pixel bounds
@pytest.mark.parametrize("d", [8, 32, 128])
def test_pixel_exact_bound_equals_latent_bound_at_every_d(d):
    S = lm.random_subspace(d, 4, seed=d)
    A = lm.gaussian_matrix(6, d, seed=d + 1)
    sp = lm.spectrum(A, S)
    for ab in (1.0, 0.7):
        latent = float(lm.latent_step_bound(sp.s_max, c=ab**0.5))
        assert float(lm.pixel_exact_step_bound(A, S, ab)) == pytest.approx(latent, rel=1e-10)


def test_pixel_ridge_bound_matches_dense_hessian_and_limits():
    d, k, l = 40, 4, 8
    S = lm.random_subspace(d, k, seed=0)
    A = lm.gaussian_matrix(l, d, seed=1)
    eye = torch.eye(d, dtype=F64)
    P = S @ S.T
    ridge, ab = 1e-3, 1 - 1e-4
    Sig = P + ridge * eye
    V = ab**0.5 * Sig @ torch.linalg.inv(ab * Sig + (1 - ab) * eye)
    H = V.T @ A.T @ A @ V
    bound = float(lm.pixel_ridge_step_bound(A, S, ridge, ab))
    assert bound == pytest.approx(1 / float(torch.linalg.eigvalsh(H)[-1]), rel=1e-9)
    exact = float(lm.pixel_exact_step_bound(A, S, ab))
    assert bound < exact
    # once 1 - ab << ridge the pixel denoiser stops projecting: the bound tends to 1/lambda_max(A^T A)
    lam_A = float(torch.linalg.eigvalsh(A.T @ A)[-1])
    assert float(lm.pixel_ridge_step_bound(A, S, 1e-2, 1 - 1e-9)) == pytest.approx(1 / lam_A, rel=1e-3)
    assert lam_A >= float(lm.spectrum(A, S).s_max)
    # and as the ridge vanishes it returns to the exact bound
    assert float(lm.pixel_ridge_step_bound(A, S, 1e-12, 0.9)) == pytest.approx(
        float(lm.pixel_exact_step_bound(A, S, 0.9)), rel=1e-8
    )


# -------------------------------------------------------------------------------------- T1 two-state
def test_two_state_optimal_denoisers_and_least_squares_fit():
    k, d, beta, n = 4, 10, 0.1, 20000
    eye = torch.eye(k, dtype=F64)
    assert torch.allclose(lm.optimal_latent_denoiser(beta, eye), (1 - beta) ** 0.5 * eye, atol=1e-15)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(k, k, generator=g, dtype=F64)
    cov = X @ X.T / k + 0.2 * eye
    one_step = lm.GaussianLatentPrior(cov=cov, alphas_cumprod=torch.tensor([1 - beta], dtype=F64))
    phi = lm.optimal_latent_denoiser(beta, cov)
    assert torch.allclose(phi, one_step.tweedie_matrix(0), atol=1e-13)
    z0 = torch.randn(n, k, generator=g, dtype=F64)
    z1 = (1 - beta) ** 0.5 * z0 + beta**0.5 * torch.randn(n, k, generator=g, dtype=F64)
    phi_hat = lm.fit_linear_denoiser(z0, z1)
    assert float((phi_hat - (1 - beta) ** 0.5 * eye).norm()) <= 3 * k / n**0.5
    # pixel counterpart: theta* = sqrt(1 - beta) P, fitted on x = S z pairs
    S = lm.random_subspace(d, k, seed=1)
    theta = lm.optimal_pixel_denoiser(beta, S)
    assert torch.allclose(theta, (1 - beta) ** 0.5 * S @ S.T, atol=1e-13)
    x0 = z0 @ S.T
    x1 = (1 - beta) ** 0.5 * x0 + beta**0.5 * torch.randn(n, d, generator=g, dtype=F64)
    assert float((lm.fit_linear_denoiser(x0, x1) - theta).norm()) <= 3 * d / n**0.5
    # normalised generator D(phi* z1/sqrt(1-beta)) has law N(0, S S^T); unnormalised is off by beta sqrt(k)
    phi_id = lm.optimal_latent_denoiser(beta, eye)
    gen = S @ phi_id / (1 - beta) ** 0.5
    assert torch.allclose(gen @ gen.T, S @ S.T, atol=1e-13)
    gap = float((S @ phi_id @ phi_id.T @ S.T - S @ S.T).norm())
    assert gap == pytest.approx(beta * k**0.5, rel=1e-12)
