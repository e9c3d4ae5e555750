"""Property tests of the T4 (rank condition) and T5 (noisy measurements) checks: the core's guided map and
``psld.sample`` against the closed forms of docs/theory.md, plus the negative cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import dims, gen

import linear_model as lm
from verification.checks import t4_rank as t4
from verification.checks import t5_noisy as t5
from verification.checks.t3_contraction import F64, mid_c, random_problems
from verification.fixed_point import iterate
from verification.result import CHECKS

seeds = st.integers(0, 2**16)
cs = st.sampled_from([1.0, mid_c()])


@st.composite
def deficient_dims(draw, k_max: int = 8, d_max: int = 64):
    """``dims`` with ``k >= 2`` and a rank ``r in [1, k - 1]``."""
    d, k, l = draw(dims(k_min=2, k_max=k_max, d_max=d_max))
    r = draw(st.integers(1, k - 1))
    return d, k, l, r


# ---------------------------------------------------------------------------------------------- T4
@given(deficient_dims(), seeds, st.floats(0.05, 1.5), st.floats(0.0, 0.9), cs)
def test_t4_null_space_error_is_invariant(dkrl, seed, frac, share, c):
    d, k, l, r = dkrl
    p, full, N = t4.deficient_problems(d, k, l, r, seed=seed)
    sv = torch.linalg.svdvals(p.A[0] @ p.S[0])  # rank(AS) = r: k - r singular values at round-off
    scale = float(torch.linalg.matrix_norm(full.A[0], 2))
    assert float(sv[r - 1]) > 1e-8 * scale and float(sv[r:].max()) <= 1e-12 * scale
    assert int(lm.spectrum(full.A, full.S).rank[0]) == k
    assert float((p.A[0] @ p.S[0] @ N[0]).abs().max()) <= 1e-12 * scale
    smax = p.s_max
    omega = (1 - share) * frac / (c * c * smax)
    gamma = share * frac / (c * c * smax**2)
    z0 = torch.randn(1, k, generator=gen(seed + 1), dtype=F64) * 2
    res = t4.null_invariance(p, N, z0, omega=omega, gamma=gamma, c=c, n=60)
    assert float(res["null_change"][0]) <= 1e-12
    if frac < 1:
        assert float(res["range_ratio"][0]) <= 1.0
    # negative: the rank-deficient iteration cannot recover w0; its error keeps the null component
    z = iterate(
        z0,
        p.ae.encoder,
        p.ae.decoder,
        p.op,
        p.y,
        omega=omega,
        gamma=gamma,
        n=60,
        method="psld",
        c=c,
        blowup=1e6,
    )
    null0 = float(((c * z0 - p.w0) @ N[0]).norm())
    assert float((c * z - p.w0).norm()) >= null0 * (1 - 1e-12) > 0


@settings(max_examples=3)
@given(deficient_dims(k_max=6, d_max=32), seeds)
def test_t4_chain_null_part_is_a_prior_draw_full_rank_recovers(dkrl, seed):
    d, k, l, r = dkrl
    p, full, N = t4.deficient_problems(d, k, l, r, seed=seed)
    n = 300
    omega, gamma = 0.5 / float(p.s_max[0]), 0.05 / float(p.s_max[0]) ** 2
    ch = t4.chain_errors(p, N[0], n, omega=omega, gamma=gamma, seed=seed + 1)
    assert ch["pred_null"] == pytest.approx(ch["w_null_sq"] + (k - r) * ch["v0"], rel=1e-6)
    assert abs(float(ch["null_sq"].mean()) - ch["pred_null"]) <= 4 * ch["se_null"]
    range_se = float(ch["range_sq"].std()) / math.sqrt(n)
    assert abs(float(ch["range_sq"].mean()) - ch["pred_range"]) <= 4 * range_se + 1e-12
    # ||P_null (z - w0)|| >= tau with high probability
    assert float((ch["null_sq"].sqrt() >= 0.01).double().mean()) >= 0.9
    # negative: full rank (same A0) has no null space and recovers
    om_f, ga_f = 0.5 / float(full.s_max[0]), 0.05 / float(full.s_max[0]) ** 2
    fr = t4.chain_errors(full, None, n, omega=om_f, gamma=ga_f, seed=seed + 2)
    assert float(fr["null_sq"].abs().max()) == 0.0
    full_se = float(fr["range_sq"].std()) / math.sqrt(n)
    assert abs(float(fr["range_sq"].mean()) - fr["pred_range"]) <= 4 * full_se + 1e-12
    assert float(fr["range_sq"].mean()) < float(ch["null_sq"].mean())


def test_t4_check_passes_at_quick_level():
    rows = CHECKS["t4-rank"].fn(level="quick", seed=0)
    assert len(rows) >= 2 and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows]


# ---------------------------------------------------------------------------------------------- T5
@given(dims(), seeds, st.floats(1e-3, 1.0), st.sampled_from(["ldps", "psld"]))
def test_t5_fixed_point_is_least_squares_with_bounded_error(dkl, seed, sigma, method):
    d, k, l = dkl
    p1 = random_problems(d, k, l, seed=seed)
    assume(float(p1.kappa[0]) <= 50)
    p, noise = t5.noisy_draws(p1, sigma, 16, seed=seed + 1)
    if method == "ldps":
        z, _ = t5.fixed_point(p)
    else:
        z, _ = t5.fixed_point(p, method="psld", frac=0.9, share=0.3)
    assert float(t5.least_squares_gap(p, z).max()) <= 1e-10
    assert float(t5.error_bound_ratio(p, z, noise).max()) <= 1.0 + 1e-9  # attained when l = k = 1
    # negative: with noise the fixed point is not w0, its error is exactly M^{-1} B^T n
    B = p.A @ p.S
    err = torch.linalg.solve(p.M[0], B.T @ noise.T).T
    torch.testing.assert_close(z - p.w0, err, rtol=1e-8, atol=1e-10)


@settings(max_examples=8)
@given(dims(), seeds, st.floats(0.01, 1.0))
def test_t5_risk_is_least_squares_not_bayes(dkl, seed, sigma):
    d, k, l = dkl
    p1 = random_problems(d, k, l, seed=seed)
    assume(float(p1.kappa[0]) <= 50)
    p, _ = t5.noisy_draws(p1, sigma, 1000, seed=seed + 1)
    z, _ = t5.fixed_point(p)
    rk = t5.risks(p, z, sigma)
    assert abs(rk["ls_mc"] - rk["ls_theory"]) <= 4 * rk["ls_se"]
    assert abs(rk["bayes_mc"] - rk["bayes_theory"]) <= 4 * rk["bayes_se"]
    # negative: least squares is not the posterior mean; its risk is above the Bayes risk
    assert rk["ls_theory"] > rk["bayes_theory"]
    gap = rk["ls_theory"] - rk["bayes_theory"]
    assert abs(rk["paired_gap_mc"] - gap) <= 4 * rk["paired_gap_se"] + 1e-12


def test_t5_check_passes_at_quick_level():
    rows = CHECKS["t5-noisy"].fn(level="quick", seed=0)
    assert len(rows) >= 2 and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows]
