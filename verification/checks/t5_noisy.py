"""T5 (docs/theory.md T5, §5.3): with noise the guided iteration returns least squares, not a posterior draw.

``y = B w0 + n`` (``n = sigma_y xi``), ``M > 0``, squared losses, ``E = S^T``, ``D = S``, ``c = 1``:

* the core's guided fixed-point iteration (:func:`verification.fixed_point.iterate`, LDPS and PSLD glue)
  converges to ``z_LS = M^{-1} B^T y`` (:func:`linear_model.least_squares`), with ``n`` iterations taken
  from the exact rate;
* ``||z_LS - w0|| = ||M^{-1} B^T n|| <= ||n||/sqrt(s_min)`` in every draw;
* its mean squared error is ``sigma^2 tr(M^{-1})`` (:func:`linear_model.least_squares_risk`): Monte Carlo
  over many noise draws, run as one batch, within 4 standard errors
  (``sigma^2 sqrt(2 tr(M^{-2})/n)``: the error is ``N(0, sigma^2 M^{-1})``);
* negative case (not a posterior sampler): that risk is above the Bayes risk of the posterior mean,
  ``tr((I + M/sigma^2)^{-1})`` (:func:`linear_model.posterior_mean_risk`), both in closed form and by Monte
  Carlo with ``w0`` drawn from the prior (posterior means from :func:`linear_model.exact_posterior`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import linear_model as lm
from verification.checks.t3_contraction import (
    F64,
    Problem,
    gen,
    make_problem,
    random_problems,
    rate,
    single_threaded,
    steps_for,
)
from verification.fixed_point import iterate
from verification.result import CheckResult, level_size, register

NAME = "t5-noisy"


def noisy_draws(
    p: Problem, sigma: float, n: int, *, seed: int | torch.Generator = 0
) -> tuple[Problem, Tensor]:
    """``n`` noisy problems on the one-row instance ``p``: ``w0 ~ N(0, I)`` per draw and ``y = B w0 + n``
    with ``n = sigma xi``. Returns the shared-matrix problem and the noise ``[n, l]``."""
    if p.batch != 1:
        raise ValueError("noisy_draws takes a one-row problem (use Problem.instance(b))")
    g = gen(seed)
    S, A = (p.S, p.A) if p.shared else (p.S[0], p.A[0])
    w0 = torch.randn(n, p.k, generator=g, dtype=F64)
    clean = make_problem(S, A, w0)
    noise = sigma * torch.randn(clean.y.shape, generator=g, dtype=F64)
    return make_problem(S, A, w0, y=clean.y + noise), noise


def fixed_point(
    p: Problem,
    *,
    method: str = "ldps",
    frac: float | None = None,
    share: float = 0.0,
    tol: float = 1e-14,
    max_iter: int = 20_000,
) -> tuple[Tensor, int]:
    """Run the core's guided iteration (``c = 1``) to its fixed point: the rate-optimal LDPS step when
    ``frac`` is None, else ``c^2 h(s_max) = frac`` with glue share ``share``; the number of iterations is
    ``log(tol)/log(rho)`` from the exact rate (capped). Returns ``(z, n)``."""
    if frac is None:
        omega = lm.best_ldps_step(p.s_min, p.s_max)
        gamma = torch.zeros_like(omega)
    else:
        omega, gamma = steps_for(p, frac, share)
    rho = float(rate(p, omega, gamma, 1.0, method).max())
    n = min(max_iter, int(math.ceil(math.log(tol) / math.log(rho)))) if rho > 0 else 1
    z0 = torch.zeros(p.batch, p.k, dtype=F64)
    z = iterate(z0, p.ae.encoder, p.ae.decoder, p.op, p.y, omega=omega, gamma=gamma, n=n, method=method)
    return z, n


def least_squares_gap(p: Problem, z: Tensor) -> Tensor:
    """``||z - z_LS|| / max(1, ||z_LS||)`` per row."""
    z_ls = lm.least_squares(p.A, p.S, p.y)
    return (z - z_ls).norm(dim=1) / z_ls.norm(dim=1).clamp_min(1.0)


def error_bound_ratio(p: Problem, z: Tensor, noise: Tensor) -> Tensor:
    """``||z - w0|| sqrt(s_min) / ||n||`` per row (``<= 1`` is the bound)."""
    return (z - p.w0).norm(dim=1) * p.s_min.sqrt() / noise.norm(dim=1)


def risks(p: Problem, z: Tensor, sigma: float) -> dict:
    """Monte Carlo and closed-form risks of ``z`` (least squares) and of the posterior mean."""
    eigs = p.eigs[0]
    n = p.batch
    err_ls = ((z - p.w0) ** 2).sum(1)
    post = lm.exact_posterior(p.A, p.S, p.y, sigma)
    err_pm = ((post.mean - p.w0) ** 2).sum(1)
    post_var = sigma**2 / (sigma**2 + eigs)
    return {
        "ls_mc": float(err_ls.mean()),
        "ls_theory": float(lm.least_squares_risk(eigs, sigma)),
        "ls_se": sigma**2 * math.sqrt(2 * float((1 / eigs**2).sum()) / n),
        "bayes_mc": float(err_pm.mean()),
        "bayes_theory": float(lm.posterior_mean_risk(eigs, sigma)),
        "bayes_se": math.sqrt(2 * float((post_var**2).sum()) / n),
        "paired_gap_mc": float((err_ls - err_pm).mean()),
        "paired_gap_se": float((err_ls - err_pm).std() / math.sqrt(n)),
    }


@register(NAME, "T5: with noise the iteration returns z_LS (bounded error, risk above Bayes)")
@single_threaded
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    d, k, l, B = level_size(level, (16, 4, 8, 1), (32, 8, 16, 2), (64, 8, 16, 4))
    n_draws = level_size(level, 400, 2000, 8000)
    sigmas = (0.3, 0.03)
    g = gen(seed)
    probs = random_problems(d, k, l, batch=B, seed=g, kappa_max=30.0)
    gap_max, ratio_max, n_used = 0.0, 0.0, []
    mse_rows = []
    for b in range(B):
        p1 = probs.instance(b)
        for sigma in sigmas:
            p, noise = noisy_draws(p1, sigma, n_draws, seed=g)
            z, n = fixed_point(p, method="ldps")
            n_used.append(n)
            gap_max = max(gap_max, float(least_squares_gap(p, z).max()))
            ratio_max = max(ratio_max, float(error_bound_ratio(p, z, noise).max()))
            sub = make_problem(p.S, p.A, p.w0[:64], y=p.y[:64])
            z_psld, n_psld = fixed_point(sub, method="psld", frac=0.9, share=0.3)
            n_used.append(n_psld)
            gap_max = max(gap_max, float(least_squares_gap(sub, z_psld).max()))
            rk = risks(p, z, sigma)
            rk.update(instance=b, sigma=sigma, kappa=float(p1.kappa[0]))
            mse_rows.append(rk)
    rows = [
        CheckResult(
            NAME,
            "noisy y: the guided iteration (LDPS rate-optimal step; PSLD at 0.9 of the bound, glue "
            "share 0.3) "
            "converges to z_LS = M^-1 B^T y",
            0.0,
            gap_max,
            "||z_n - z_LS|| <= 1e-10 max(1, ||z_LS||), n from the exact rate",
            bool(gap_max <= 1e-10),
            {
                "instances": B,
                "d": d,
                "k": k,
                "l": l,
                "draws": n_draws,
                "sigmas": list(sigmas),
                "iterations": n_used,
            },
        ),
        CheckResult(
            NAME,
            f"||z_LS - w0|| <= ||n||/sqrt(s_min) in every draw ({B * len(sigmas) * n_draws} draws)",
            1.0,
            ratio_max,
            "max ||z - w0|| sqrt(s_min)/||n|| <= 1 + 1e-9 (round-off: the bound is attained when l = k = 1)",
            bool(ratio_max <= 1.0 + 1e-9),
            {},
        ),
    ]
    ok_mse = all(abs(r["ls_mc"] - r["ls_theory"]) <= 4 * r["ls_se"] for r in mse_rows)
    first = mse_rows[0]
    rows.append(
        CheckResult(
            NAME,
            f"E||z_LS - w0||^2 = sigma^2 tr(M^-1) (Monte Carlo, {n_draws} draws per case, "
            f"sigma in {list(sigmas)})",
            first["ls_theory"],
            first["ls_mc"],
            "every case within 4 standard errors",
            bool(ok_mse),
            {
                "cases": [
                    {key: r[key] for key in ("instance", "sigma", "kappa", "ls_theory", "ls_mc", "ls_se")}
                    for r in mse_rows
                ]
            },
        )
    )
    ok_bayes = all(
        r["ls_theory"] >= r["bayes_theory"]
        and abs(r["bayes_mc"] - r["bayes_theory"]) <= 4 * r["bayes_se"]
        and abs(r["paired_gap_mc"] - (r["ls_theory"] - r["bayes_theory"])) <= 4 * r["paired_gap_se"]
        for r in mse_rows
    )
    rows.append(
        CheckResult(
            NAME,
            "negative: the fixed point is not the posterior mean: its risk sigma^2 tr(M^-1) exceeds the "
            "Bayes "
            "risk tr((I + M/sigma^2)^-1) (closed forms and Monte Carlo)",
            first["bayes_theory"],
            first["bayes_mc"],
            "closed-form LS risk >= Bayes risk; Bayes Monte Carlo and the paired Monte Carlo gap "
            "(LS - Bayes) "
            "within 4 standard errors of their closed forms, in every case",
            bool(ok_bayes),
            {
                "cases": [
                    {
                        key: r[key]
                        for key in (
                            "instance",
                            "sigma",
                            "ls_theory",
                            "bayes_theory",
                            "bayes_mc",
                            "bayes_se",
                            "paired_gap_mc",
                            "paired_gap_se",
                        )
                    }
                    for r in mse_rows
                ]
            },
        )
    )
    return rows
