"""T12: the check's rows, the exact guidance displacement the trace compares with, and the MCGdiff-code DPS
reference (its timesteps and its variance recursion against Monte Carlo)."""

from __future__ import annotations

import pytest
import torch
from strategies import gen

from linear_model.gmm_benchmark import mcgdiff_problem
from linear_model.mixture import GaussianMixture, GaussianMixtureLatentPrior
from psld.schedule import ddim_sigma, ddim_step, make_alphas_cumprod, predict_z0
from verification.checks import t12_posterior_calibration as t12
from verification.gmm_methods import (
    mcgdiff_alphas_cumprod,
    mcgdiff_dps,
    mcgdiff_timesteps,
    mcgdiff_variance,
    run_method,
)

F64 = torch.float64


def test_quick_check_passes_with_negative_rows():
    rows = t12.check(level="quick", seed=0)
    assert all(r.passed for r in rows), [(r.statement, r.measured) for r in rows if not r.passed]
    negatives = [r for r in rows if r.statement.startswith("negative")]
    assert len(negatives) == 2
    oracle = next(r for r in rows if r.statement.startswith("oracle"))
    for r in negatives:  # the stated margin, recomputed from the reported numbers
        assert r.measured > 5 * oracle.measured


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_exact_guidance_displacement(eta):
    """Swapping the prior's eps for the posterior's moves the DDIM update by kappa_t grad log p_t(y | z_t)."""
    p = mcgdiff_problem(4, 1, gen(1))
    ac = make_alphas_cumprod("linear")
    prior, post = GaussianMixtureLatentPrior(p.prior, ac), GaussianMixtureLatentPrior(p.posterior, ac)
    z = torch.randn(6, 4, generator=gen(2), dtype=F64)
    a, a_prev = float(ac[500]), float(ac[450])
    s = ddim_sigma(a, a_prev, eta)
    noise = torch.randn(6, 4, generator=gen(3), dtype=F64)

    def step(pr):
        e = pr.eps(z, 500)
        return ddim_step(predict_z0(z, e, a), e, a_prev, s, noise if s > 0 else None)

    kappa = (1 - a) ** 0.5 * ((a_prev * (1 - a) / a) ** 0.5 - (1 - a_prev - s * s) ** 0.5)
    g = post.score(z, 500) - prior.score(z, 500)
    assert torch.allclose(step(post) - step(prior), kappa * g, atol=1e-10)
    assert kappa > 0


def test_ldps_is_dps_for_one_step_and_psld_is_not():
    p = mcgdiff_problem(8, 2, gen(4))
    out = {
        m: run_method(p, m, num_steps=1, eta=1.0, n=50, generator=gen(5))[0] for m in ("dps", "ldps", "psld")
    }
    assert torch.allclose(out["ldps"], out["dps"], atol=1e-12)
    assert float((out["psld"] - out["dps"]).abs().max()) > 1e-6


def test_dps_trace_has_one_entry_per_step():
    p = mcgdiff_problem(8, 1, gen(6))
    _, trace = run_method(p, "dps", num_steps=7, eta=1.0, n=20, generator=gen(7), trace_samples=10)
    assert len(trace.cosine) == len(trace.ratio) == len(trace.alpha) == 7
    assert all(-1 - 1e-12 <= c <= 1 + 1e-12 for c in trace.cosine)
    assert trace.alpha == sorted(trace.alpha)  # noise to data: abar increases


def test_mcgdiff_timesteps_and_schedule():
    ac = mcgdiff_alphas_cumprod()
    assert ac.numel() == 1000 and float(ac[0]) == 1.0 and bool((ac[1:] < ac[:-1]).all())
    for n in (20, 100):
        ts = mcgdiff_timesteps(ac, torch.tensor([0.7, 0.2], dtype=F64), n, 0.05)
        assert len(ts) == n and ts[0] == 0 and ts[-1] == 999 and ts == sorted(set(ts))


@pytest.mark.parametrize("eta,n_steps", [(1.0, 20), (0.6, 50)])
def test_mcgdiff_dps_variance_recursion(eta, n_steps):
    """Unguided, exact score, N(0, I) data: the sample variance matches the recursion (truth: 1)."""
    ac = mcgdiff_alphas_cumprod()
    ts = mcgdiff_timesteps(ac, torch.tensor([0.5], dtype=F64), n_steps, 0.01)
    one = GaussianMixture.isotropic(torch.ones(1, dtype=F64), torch.zeros(1, 4, dtype=F64))
    n = 20_000
    x = mcgdiff_dps(
        one,
        torch.zeros(1, 4, dtype=F64),
        torch.zeros(1, dtype=F64),
        n=n,
        eta=eta,
        timesteps=ts,
        alphas_cumprod=ac,
        generator=gen(8),
        zeta=0.0,
    )
    pred = mcgdiff_variance(ac, ts, eta)
    assert abs(float(x.var(0).mean()) - pred) <= 5 * pred * (2 / (4 * n)) ** 0.5
    if eta < 1:
        assert pred < 0.5  # far from the truth 1: the bias, not Monte Carlo noise
