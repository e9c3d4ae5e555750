"""Property tests of the T8 (over-complete latent), T9 (phase transition) and T10 (noisy calibration)
checks: measured through ``psld.sample`` / the guided map against docs/theory.md, plus the negative cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import linear_model as lm
from verification.checks import t8_overcomplete as t8
from verification.checks import t9_phase_transition as t9
from verification.checks import t10_calibration as t10
from verification.result import CHECKS

seeds = st.integers(0, 2**16)


# ---------------------------------------------------------------------------------------------- T8
@settings(max_examples=6)
@given(seeds, st.sampled_from([0.1, 1.0]))
def test_t8_glued_methods_beat_ldps_which_fits_y_off_the_manifold(seed, eps):
    # table 7.4's model (d=64, k=8, m=16, l=16 < p=24), 1000 DDIM steps. Over 30 random instances the
    # smaller of the margins LDPS/GML, LDPS/PSLD was >= 7.1 at eps_z = 1 and >= 1.97 at eps_z = 0.1 (at
    # eps_z = 0.01 it fell below 1 on 2 of 30, so the ">= 2x for eps_z >= 0.01" of docs/theory.md T8 is one
    # instance's finding, not a property).
    r = t8.overcomplete_errors(eps_list=(0.0, eps), seed=seed, n_seeds=2, num_steps=1000)
    ldps, gml, psld = (r[m]["error"][1] for m in t8.METHODS)
    need = 2.0 if eps >= 1.0 else 1.5
    assert ldps >= need * gml and ldps >= need * psld
    assert r["ldps"]["residual"][1] <= 5e-2  # consistent with y ...
    assert ldps >= 0.05  # ... yet wrong
    # negative: without leakage (eps_z = 0) all three recover; no separation is asserted
    assert max(r[m]["error"][0] for m in t8.METHODS) <= 0.1


def test_t8_step_budget_is_split_as_documented():
    g = t8.gen(0)
    ae = t8.overcomplete_autoencoder(32, 4, 8, g)
    A = lm.gaussian_matrix(8, 32, seed=g)
    J = t8.glue_jacobians(ae, A)
    top = {k: float(torch.linalg.eigvalsh(v.T @ v)[-1]) for k, v in J.items()}
    for method in t8.METHODS:
        om, ga = t8.steps(ae, A, method)
        total = om * top["meas"] + (ga * top[method] if method != "ldps" else 0.0)
        assert total == pytest.approx(0.9, rel=1e-12)
    # E D = diag(I_k, 0) != I_p but D E S = S
    assert torch.allclose(ae.D @ ae.E @ ae.S, ae.S, atol=1e-12)
    assert not torch.allclose(ae.E @ ae.D, torch.eye(12, dtype=torch.float64))


@given(st.integers(1, 6), st.integers(0, 8), seeds, st.floats(0.05, 2.0))
def test_t8_negative_gml_is_ldps_when_p_equals_k(k, extra_l, seed, gamma):
    l = k + extra_l
    gap = t8.gml_equals_ldps(d=l + 4, k=k, l=l, seed=seed, n_seeds=2, num_steps=30, gamma=gamma)
    assert gap <= 1e-12


def test_t8_check_quick_all_rows_pass():
    rows = CHECKS[t8.NAME].fn(level="quick", seed=0)
    assert rows and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows if not r.passed]


# ---------------------------------------------------------------------------------------------- T9
@given(st.integers(1, 8), st.integers(0, 20), st.integers(1, 30), seeds)
def test_t9_gaussian_recovery_iff_rank_k(k, l_raw, extra_d, seed):
    l = max(1, min(l_raw, 2 * k + 2))
    d = max(l, k) + extra_d
    r = t9.gaussian_success(k, l, d, seed=seed, n_trials=24)
    if l < k:
        assert r["rate"] == 0.0  # negative: rank(AS) < k, the null space is never recovered
        assert not bool(r["full_rank"].any())
    elif l > k:
        assert r["rate"] == 1.0
        assert r["max_fixed_point_residual"] <= 1e-8
    else:  # l = k: full rank almost surely, but kappa can be huge
        assert r["rate"] >= 0.9
    assert not bool((r["success"] & ~r["full_rank"]).any())  # success implies rank k


@given(st.integers(1, 6), st.integers(6, 40), st.floats(0.0, 1.0), seeds)
def test_t9_mask_recovery_is_hypergeometric(k, d, frac, seed):
    d = max(d, k)
    l = max(1, round(frac * d))
    r = t9.mask_success(d, k, l, seed=seed, n_trials=300)
    if l < k:
        assert r["predicted"] == 0.0 and r["measured"] == 0.0  # negative: exactly 0
    elif l == d:
        assert r["predicted"] == 1.0 and r["measured"] == 1.0
    else:
        # exact binomial test (p can be ~1e-4 here, where the normal 3-SE rule of the check does not apply)
        hits = round(r["measured"] * r["n"])
        assert stats.binomtest(hits, r["n"], r["predicted"]).pvalue > 1e-4


def test_t9_check_quick_all_rows_pass():
    rows = CHECKS[t9.NAME].fn(level="quick", seed=0)
    assert rows and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows if not r.passed]


# ---------------------------------------------------------------------------------------------- T10
@settings(max_examples=8)
@given(st.floats(0.1, 0.5), seeds)
def test_t10_oracle_samples_the_posterior_constant_step_chains_do_not(sigma, seed):
    # well-conditioned instances (kappa <= 20) so that 500 guided steps contract every direction
    r = t10.calibration(sigma, d=20, k=4, l=16, seed=seed, n=500, num_steps=500, kappa_max=20.0)
    o = r["oracle"]
    assert o["p_value"] > 1e-4
    assert o["whitened_dev"] <= 5 * o["whitened_sd"]
    assert abs(o["spread"] - 1) <= 0.25
    for method in ("dps", "psld"):  # negative: collapse onto z_LS; the oracle's calibration test fails
        s = r[method]
        assert s["spread"] < 0.5
        assert s["whitened_dev"] > 10 * s["whitened_sd"]
        assert s["mahal_to_z_ls"] <= 0.04 * s["mahal_post_to_z_ls"] + 1e-12


def test_t10_sample_stats_on_exact_draws():
    g = torch.Generator().manual_seed(3)
    L = torch.tensor([[1.0, 0.0], [0.5, 0.3]], dtype=torch.float64)
    cov, mean = L @ L.T, torch.tensor([0.2, -1.0], dtype=torch.float64)
    z = mean + torch.randn(4000, 2, generator=g, dtype=torch.float64) @ L.T
    s = t10.sample_stats(z, mean, cov)
    assert s["p_value"] > 1e-3 and abs(s["spread"] - 1) < 0.1 and s["whitened_dev"] < 5 * s["whitened_sd"]
    shrunk = t10.sample_stats(mean + 0.1 * (z - mean), mean, cov)
    assert shrunk["spread"] == pytest.approx(0.01 * s["spread"], rel=1e-9)


def test_t10_check_quick_all_rows_pass():
    rows = CHECKS[t10.NAME].fn(level="quick", seed=0)
    assert rows and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows if not r.passed]
