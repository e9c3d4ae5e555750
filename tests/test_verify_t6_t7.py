"""Property tests of the T6 (pixel vs latent) and T7 (full-chain recursion) checks: measured through
``psld.sample`` / the guided map against the closed forms of docs/theory.md, plus the negative cases."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import linear_model as lm
from psld.sampler import DivergenceWarning
from verification.checks import t6_pixel_latent as t6
from verification.checks import t7_full_chain as t7
from verification.result import CHECKS

seeds = st.integers(0, 2**16)


@st.composite
def dims(draw, k_max: int = 8, d_max: int = 96):
    """``k``, ``l >= k``, ``d > l`` (docs/theory.md §6 common strategy, scaled down)."""
    k = draw(st.integers(1, k_max))
    l = draw(st.integers(k, 3 * k))
    d = draw(st.integers(l + 1, max(l + 1, d_max)))
    return d, k, l


# ---------------------------------------------------------------------------------------------- T6
@given(dims(), seeds, st.floats(0.05, 0.95))
def test_t6_pixel_and_latent_ddim_chains_coincide(dkl, seed, frac):
    d, k, l = dkl
    r = t6.pixel_latent_gap(d, k, l, seed=seed, batch=2, num_steps=40, omega_frac=frac)
    assert r["latent_gap"] <= 1e-10
    assert r["off_manifold"] <= 1e-10
    # negative: a ridge pixel prior acts off the subspace, so the chains no longer coincide
    with warnings.catch_warnings():  # the ridge chain may drift off the manifold: that is the point here
        warnings.simplefilter("ignore", DivergenceWarning)
        neg = t6.pixel_latent_gap(d, k, l, seed=seed, batch=2, num_steps=40, omega_frac=frac, ridge=1e-2)
    assert max(neg["latent_gap"], neg["off_manifold"]) > 1e-6


@given(dims(k_max=6, d_max=80), seeds)
def test_t6_fixed_point_thresholds_match_theory(dkl, seed):
    d, k, l = dkl
    r = t6.step_thresholds(d, k, l, seed=seed, n_starts=3, grid=13, iters=(40, 300, 300))
    assert r["monotone"]
    assert r["theory_pixel_exact"] == pytest.approx(r["theory_latent"], rel=1e-10)
    assert r["latent"] >= r["theory_latent"] * (1 - 1e-9)
    assert abs(r["latent"] / r["theory_latent"] - 1) <= 5e-3
    assert abs(r["pixel_exact"] / r["latent"] - 1) <= 1e-3
    assert abs(r["ridge"] / r["theory_ridge"] - 1) <= 5e-3
    # the ridge acts off the subspace: its bound is always below the exact-prior bound
    assert r["theory_ridge"] < r["theory_latent"]


@settings(max_examples=5)
@given(st.integers(2, 5), seeds)
def test_t6_negative_exact_prior_threshold_does_not_depend_on_d(k, seed):
    """Same M at two ambient dimensions: the exact-prior threshold is unchanged, the ridge one falls."""
    l = 2 * k
    g = t7.gen(seed)
    U, _ = torch.linalg.qr(torch.randn(l, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64))
    s = torch.linspace(0.3, 2.0, k, dtype=torch.float64)
    B = U * s.sqrt() @ V.T
    w0 = torch.randn(k, generator=g, dtype=torch.float64)
    out = {}
    for d in (3 * l, 12 * l):
        S = lm.random_subspace(d, k, seed=g)
        R = torch.randn(l, d, generator=g, dtype=torch.float64) / l**0.5
        A = B @ S.T + R @ (torch.eye(d, dtype=torch.float64) - S @ S.T)
        out[d] = t6.thresholds_for(
            S, A, w0, seed=seed, n_starts=3, grid=13, iters=(40, 300, 300), variants=("latent", "ridge")
        )
    a, b = out.values()
    assert abs(a["latent"] / b["latent"] - 1) <= 1e-3
    assert b["ridge"] < 0.7 * a["ridge"]


@given(st.integers(1, 8), st.integers(2, 120), st.integers(2, 60), seeds)
def test_t6_off_manifold_energy_at_early_stop(k, extra, t_min, seed):
    d, l = k + extra, k + 2
    assume(l <= d)
    r = t6.off_manifold_energy(d, k, l, seed=seed, n_chains=48, t_min=t_min, num_steps=50)
    assert r["predicted"] == (d - k) * (1 - r["abar"])
    assert abs(r["measured"] - r["predicted"]) <= 5 * r["sd"]
    # negative: the full chain ends with a projection, so the final output carries no such energy
    assert r["final"] <= 1e-20 * max(1.0, r["predicted"])


def test_t6_lambda_ratio_tracks_d_over_l():
    rows = [t6.lambda_ratio(d, 8, 16, seed=d, n_inst=16) for d in (32, 128, 512)]
    for r in rows:
        assert 1 / 1.5 <= r["measured"] / r["predicted"] <= 1.5
    assert rows[0]["measured"] < rows[1]["measured"] < rows[2]["measured"]


def test_t6_check_quick_all_rows_pass():
    rows = CHECKS[t6.NAME].fn(level="quick", seed=0)
    assert rows and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows if not r.passed]


# ---------------------------------------------------------------------------------------------- T7
@given(dims(), seeds, st.floats(0.05, 0.9), st.floats(0.0, 0.3), st.sampled_from([10, 40, 100]))
def test_t7_ddim_chain_equals_recursion(dkl, seed, omega, gshare, steps):
    d, k, l = dkl
    gamma = gshare * (1 - omega)  # omega s_max + gamma s_max^2 < 1 with s_max = 1
    r = t7.ddim_recursion_gap(d, k, l, seed=seed, n_inst=2, num_steps=steps, omega=omega, gamma=gamma)
    assert float(r["rel_gap"].max()) <= 1e-10


@given(st.integers(2, 6), seeds, st.floats(0.1, 0.9), st.floats(0.0, 0.1))
def test_t7_ddpm_mean_square_error_matches_recursion(k, seed, omega, gamma):
    r = t7.ddpm_mse(
        4 * k, k, 2 * k, seed=seed, n_inst=2, n_seeds=400, num_steps=100, omega=omega, gamma=gamma
    )
    assert float(r["z"].abs().max()) <= 5.0


@given(st.floats(0.9, 1.1), seeds)
def test_t7_top_direction_error_across_the_finite_T_threshold(ratio, seed):
    r = t7.threshold_and_kappa(24, 4, 8, seed=seed, ratios=(ratio,), n_seeds=300, num_steps=100)
    assert abs(float(r["top_z"][0])) <= 5.0


@given(st.floats(200.0, 5000.0), seeds)
def test_t7_negative_ill_conditioned_weak_direction_keeps_a_large_error(kappa, seed):
    r = t7.threshold_and_kappa(24, 4, 8, seed=seed, ratios=(), kappa=kappa, n_seeds=300, num_steps=100)
    assert r["kappa"] == pytest.approx(kappa, rel=1e-8)
    assert r["weak_pred"] >= 0.1 and r["weak_meas"] >= 0.1
    assert abs(r["weak_z"]) <= 5.0 and abs(r["strong_z"]) <= 5.0
    assert r["strong_pred"] < 0.1 * r["weak_pred"]


def test_t7_chain_alphas_rejects_a_schedule_that_does_not_chain():
    from psld.config import PSLDConfig

    ac = lm.GaussianLatentPrior(k=1).alphas_cumprod
    assert t7.chain_alphas(ac, PSLDConfig(num_steps=10)).shape == (10,)
    try:
        t7.chain_alphas(ac, PSLDConfig(num_steps=10, set_alpha_to_one=False))
    except ValueError as e:
        assert "chain" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected ValueError")
    assert math.isclose(float(t7.chain_alphas(ac, PSLDConfig(num_steps=1000))[0]), float(ac[0]))


def test_t7_check_quick_all_rows_pass():
    rows = CHECKS[t7.NAME].fn(level="quick", seed=0)
    assert rows and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows if not r.passed]
