"""Property tests of the T3 check (the guided fixed-point iteration is a contraction): the core's guided map
against the exact rate and step bound of docs/theory.md, plus the negative case (divergence above it)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import dims, gen

import linear_model as lm
from verification.checks import t3_contraction as t3
from verification.result import CHECKS

F64 = t3.F64
seeds = st.integers(0, 2**16)
cs = st.sampled_from([1.0, t3.mid_c()])


@given(
    dims(), seeds, st.floats(0.05, 0.999), st.floats(0.0, 0.9), cs, st.sampled_from(["ldps", "psld", "gml"])
)
def test_t3_envelope_and_convergence(dkl, seed, frac, share, c, method):
    d, k, l = dkl
    p = t3.random_problems(d, k, l, seed=seed)
    kappa = float(p.kappa[0])
    # finite-iteration recovery needs kappa bounded or n from the rate (docs/theory.md §6): cap n at 300
    assume(kappa <= 20)
    best = lm.best_ldps_step(p.s_min, p.s_max, c)
    rho_best = float(t3.rate(p, best, 0.0, c, "ldps"))
    assert rho_best == pytest.approx((kappa - 1) / (kappa + 1), abs=1e-12)
    n = max(1, math.ceil(math.log(1e-13) / math.log(rho_best))) if rho_best > 0 else 1
    rows = p.repeat(2)
    omega, gamma = t3.steps_for(p, frac, share if method != "ldps" else 0.0, c)
    om = torch.stack([best[0], omega[0]])
    ga = torch.stack([torch.zeros((), dtype=F64), gamma[0]])
    z0 = torch.randn(2, k, generator=gen(seed + 1), dtype=F64) * 2
    res = t3.envelope(rows, z0, omega=om, gamma=ga, c=c, n=n, method=method)
    assert float(res["ratio"].max()) <= 1.0
    assert float(res["rho"][1]) < 1.0
    assert float(res["rel_final"][0]) <= 1e-10  # the rate-optimal step reaches c z = w0


@given(dims(), seeds, cs)
def test_t3_glue_identities(dkl, seed, c):
    d, k, l = dkl
    p = t3.random_problems(d, k, l, seed=seed, batch=2)
    z = torch.randn(2, k, generator=gen(seed + 1), dtype=F64) * 3
    res = t3.glue_identities(p, z, c)
    for key, value in res.items():
        assert float(value.max()) <= 1e-12, key


@given(dims(), seeds, st.floats(0.01, 0.5), st.floats(0.0, 0.5), cs)
def test_t3_above_the_bound_the_top_component_grows_exactly(dkl, seed, delta, share, c):
    d, k, l = dkl
    p = t3.random_problems(d, k, l, seed=seed)
    n = min(300, math.ceil(math.log(1e6) / math.log(1 + 2 * delta)))
    z0 = t3.start_with_top(p, c, gen(seed + 1))
    method = "psld" if share > 0 else "ldps"
    res = t3.top_growth(p, z0, delta=delta, share=share, c=c, n=n, method=method)
    assert float(res["rel_dev"].max()) <= 1e-8
    # negative: it diverges (the start has |q^T e_0| >= 1/2)
    assert float(res["top"].abs().min()) >= 0.5 * (1 + 2 * delta) ** n * (1 - 1e-8)


@settings(max_examples=5)
@given(dims(k_max=6, d_max=32), seeds, cs)
def test_t3_empirical_threshold_is_the_theory_bound(dkl, seed, c):
    d, k, l = dkl
    p = t3.random_problems(d, k, l, seed=seed)
    th = t3.empirical_threshold(p, shares=(0.0, 0.4), c=c, n_iter=200, points=16, seed=seed + 1)
    # the lowest grid point (below theory) survived, the highest (above the exact-rate excess) blew up
    assert bool(th["bracket_ok"].all())
    assert bool((th["excess"] > 0).all())
    assert bool((th["excess"] <= th["excess_bound"]).all())
    expected = lm.latent_step_bound(
        p.s_max[0], c, torch.tensor([0.0, 0.4], dtype=F64) / (c * c * p.s_max[0] ** 2)
    )
    torch.testing.assert_close(th["theory"][0], expected, rtol=1e-12, atol=0.0)


def test_t3_check_passes_at_quick_level():
    rows = CHECKS["t3-contraction"].fn(level="quick", seed=0)
    assert len(rows) >= 2 and all(r.passed for r in rows), [(r.statement, r.measured) for r in rows]
