"""Property tests of the T1 (latent generative modelling) and T2 (one-shot step) checks: measured through
``psld.sample`` / the core's guided map against the closed forms of docs/theory.md, plus the negative
cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import dims

import linear_model as lm
from verification.checks import t1_generative as t1
from verification.checks import t2_one_shot as t2
from verification.checks.t3_contraction import F64, random_problems
from verification.result import CHECKS

seeds = st.integers(0, 2**16)


# ---------------------------------------------------------------------------------------------- T1
@given(dims(), seeds, st.floats(0.3, 0.8))
def test_t1_two_state_denoiser_and_generator(dkl, seed, beta):
    d, k, _ = dkl
    fit = t1.fit_two_state(k, beta, 20_000, seed)
    assert fit["rms"] == pytest.approx(k * math.sqrt(beta / (20_000 - k - 1)))
    assert fit["error"] <= 4 * fit["rms"]
    S = lm.random_subspace(d, k, seed=seed)
    n = 8000
    z = t1.two_state_samples(S, fit["phi_hat"], beta, n, seed + 1)
    # one DDIM step of the core with the fitted denoiser returns the Tweedie estimate phi_hat z1
    assert z.shape == (n, k)
    eye = torch.eye(k, dtype=F64)
    law = t1.generator_law(fit["phi_hat"], beta, True)
    tol = float((law - eye).norm()) + 4 * t1.cov_rms(k, n, float(torch.linalg.eigvalsh(law)[-1]))
    x = (z / math.sqrt(1 - beta)) @ S.T
    assert t1.cov_error(x, S) <= tol
    # negative: the unnormalised generator misses the data law by beta sqrt(k)
    raw_law = t1.generator_law(fit["phi_hat"], beta, False)
    tol_raw = float((raw_law - (1 - beta) * eye).norm()) + 4 * t1.cov_rms(
        k, n, float(torch.linalg.eigvalsh(raw_law)[-1])
    )
    err_raw = t1.cov_error(z @ S.T, S)
    assert err_raw > tol
    assert abs(err_raw - beta * math.sqrt(k)) <= tol_raw


@settings(max_examples=4)
@given(dims(), seeds, st.sampled_from([0.0, 1.0]))
def test_t1_chain_reproduces_the_data_law(dkl, seed, eta):
    d, k, _ = dkl
    S = lm.random_subspace(d, k, seed=seed)
    n = 2000
    x = t1.chain_samples(S, n, eta=eta, seed=seed + 1)
    v0 = t1.chain_variance(eta)
    assert 0.99 < v0 < 1.0  # finite-T discretisation: slightly under-dispersed
    assert t1.cov_error(x, S) <= 4 * t1.cov_rms(k, n) + math.sqrt(k) * (1 - v0)
    # samples live on the data subspace
    P = S @ S.T
    assert float((x - x @ P).norm()) <= 1e-10 * float(x.norm())
    # negative: the same samples shrunk by sqrt(1 - beta) (the unnormalised generator) fail the test
    beta = 0.5
    assert t1.cov_error(x * math.sqrt(1 - beta), S) > 4 * t1.cov_rms(k, n) + math.sqrt(k) * (1 - v0)


def test_t1_check_passes_at_quick_level():
    rows = CHECKS["t1-generative"].fn(level="quick", seed=0)
    assert len(rows) >= 2 and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows]


# ---------------------------------------------------------------------------------------------- T2
@given(dims(), seeds, st.floats(0.2, 5.0), st.floats(1e-3, 0.5))
def test_t2_one_shot_recovers_only_at_omega_star(dkl, seed, s, delta):
    d, k, l = dkl
    p = t2.isotropic_problems(d, k, l, [s], seed=seed)
    z1 = torch.randn(1, k, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    res = t2.isotropic_errors(p, z1, torch.tensor([s], dtype=F64), deltas=(0.0, delta, -delta))
    assert float(res["gram_error"][0]) <= 1e-10 * max(1.0, s)
    assert float(res["error"][0, 0]) < 1e-10
    # wrong step: the error is exactly |delta| ||z1 - w0||
    torch.testing.assert_close(res["error"][0, 1:], res["predicted"][0, 1:], rtol=1e-9, atol=0.0)
    assert float(res["error"][0, 1:].min()) > 1e-10


@given(dims(k_min=2), seeds)
def test_t2_no_scalar_step_recovers_a_general_M(dkl, seed):
    d, k, l = dkl
    p = random_problems(d, k, l, seed=seed)
    kappa = float(p.kappa[0])
    assume(kappa <= 1e4)
    z1 = torch.randn(1, k, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    r = t2.scalar_grid_and_newton(p, z1, points=401)
    e0, best, grid = float(r["e0"][0]), float(r["closed_form"][0]), float(r["grid_best"][0])
    # the grid finds exactly the closed-form best scalar step, never better
    assert grid >= best - 1e-12 * e0
    assert grid <= best + float(r["allowance"][0]) + 1e-12 * e0
    # ... which is at most the minimax (kappa - 1)/(kappa + 1) and does not recover w0
    assert best <= (kappa - 1) / (kappa + 1) * e0 * (1 + 1e-12)
    assert best >= 1e-6 * e0
    # the Newton step (2M)^{-1} applied to the core's gradient does
    assert float(r["newton"][0]) <= 1e-10 * e0


def test_t2_check_passes_at_quick_level():
    rows = CHECKS["t2-one-shot"].fn(level="quick", seed=0)
    assert len(rows) >= 2 and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows]
