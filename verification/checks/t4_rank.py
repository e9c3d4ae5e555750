"""T4 (docs/theory.md T4, §5.3): recovery needs ``rank(AS) = k``; the null space of ``M`` is left untouched.

Rank-deficient instances are built with a known null space: ``A = A0 (I - S N N^T S^T)`` for a Gaussian
``A0`` and an orthonormal ``N`` ``[k, k - r]``, so ``A S N = 0`` and ``rank(AS) = r``
(:func:`deficient_problems`).

* **Fixed point.** The guidance gradient of the core is ``2c B^T(...)`` plus ``2c M(...)``, both orthogonal
  to ``null(M)``: the null-space error ``N^T e_n`` (``e_n = c z_n - w0``) stays exactly ``N^T e_0`` for every
  ``omega``, ``gamma`` and ``c`` (even above the bound), while the range part contracts at the rate of the
  non-zero eigenvalues.
* **Full chain.** In the stochastic chain (:func:`psld.sample`, DDPM, many seeds in one batch) the null
  coordinates run the unguided chain, so they end as a prior draw (variance ``v_0``, the exact finite-T
  variance, 0.991 on the default schedule): ``E||N^T(z - w0)||^2 = ||N^T w0||^2 + (k - r) v_0``; the range
  error follows the T7 recursion (:func:`linear_model.eigen_recursion`), which is small.
* **Negative case.** With full rank (the same ``A0``) there is no null space: the chain recovers ``w0``
  with the small error the recursion predicts.

Monte Carlo means are compared within 4 standard errors (exact for the null part,
``sqrt((2 (k - r) v_0^2 + 4 v_0 ||N^T w0||^2)/n)``; empirical for the range part).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import linear_model as lm
from psld.config import PSLDConfig
from psld.sampler import sample
from verification.checks.t3_contraction import (
    F64,
    Problem,
    gen,
    make_problem,
    mid_c,
    single_threaded,
)
from verification.fixed_point import iterate
from verification.result import CheckResult, level_size, register

NAME = "t4-rank"


def deficient_problems(
    d: int, k: int, l: int, r: int, *, batch: int = 1, seed: int | torch.Generator = 0
) -> tuple[Problem, Problem, Tensor]:
    """``batch`` instances with ``rank(AS) = r < k`` and the full-rank controls on the same ``S``, ``A0``,
    ``w0``: returns ``(deficient, full, N)`` with ``N`` ``[B, k, k - r]`` an orthonormal basis of
    ``null(AS)``."""
    if not 0 <= r < k:
        raise ValueError(f"need 0 <= r < k, got r={r}, k={k}")
    if l < r:
        raise ValueError(f"need l >= r, got l={l}, r={r}")
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g, batch=batch)
    A0 = lm.gaussian_matrix(l, d, seed=g, batch=batch)
    N, _ = torch.linalg.qr(torch.randn(batch, k, k - r, generator=g, dtype=F64))
    w0 = torch.randn(batch, k, generator=g, dtype=F64)
    SN = S @ N
    A = A0 - (A0 @ SN) @ SN.transpose(-1, -2)
    return make_problem(S, A, w0), make_problem(S, A0, w0), N


def null_invariance(
    p: Problem, N: Tensor, z0: Tensor, *, omega, gamma, c: float = 1.0, n: int = 100, blowup: float = 1e6
) -> dict[str, Tensor]:
    """Iterate the core's guided map (PSLD glue) ``n`` times; per row return the change of the null-space
    error relative to ``max(||e_0||, ||e_n||)`` (``null_change``), and the range error against its exact
    envelope ``rho_r^n ||P_r e_0|| (1 + 1e-9) + 1e-12`` (``range_ratio``; ``rho_r`` over the non-zero
    eigenvalues), with ``rho_r`` and ``range_final``. Divergent rows are frozen at ``blowup``."""
    r = p.k - N.shape[-1]
    z = iterate(
        z0,
        p.ae.encoder,
        p.ae.decoder,
        p.op,
        p.y,
        omega=omega,
        gamma=gamma,
        n=n,
        method="psld",
        c=c,
        blowup=blowup,
    )
    e0, en = c * z0 - p.w0, c * z - p.w0
    proj = lambda e: torch.einsum("bkm,bk->bm", N, e)
    null_change = (proj(en) - proj(e0)).norm(dim=1) / torch.maximum(e0.norm(dim=1), en.norm(dim=1))
    range_eigs = p.eigs[:, p.k - r :]
    om = torch.as_tensor(omega, dtype=F64).expand(p.batch)[:, None]
    ga = torch.as_tensor(gamma, dtype=F64).expand(p.batch)[:, None]
    rho_r = lm.contraction_rate(range_eigs, om, ga, c)
    range_part = lambda e: e - torch.einsum("bkm,bm->bk", N, proj(e))
    r0, rn = range_part(e0).norm(dim=1), range_part(en).norm(dim=1)
    return {
        "null_change": null_change,
        "range_ratio": rn / (rho_r**n * r0 * (1 + 1e-9) + 1e-12),
        "rho_r": rho_r,
        "range_final": rn,
    }


def chain_errors(
    p: Problem, N: Tensor | None, n_seeds: int, *, omega: float, gamma: float, seed: int | torch.Generator = 0
) -> dict:
    """Run ``n_seeds`` DDPM chains (``eta = 1``, every step, PSLD glue, squared loss) on one instance row of
    ``p`` as one :func:`psld.sample` batch. Returns per-seed squared null/range errors and their T7
    predictions (``N`` ``[k, k - r]`` or ``None`` for full rank)."""
    if p.batch != 1:
        raise ValueError("chain_errors takes a one-row problem (use Problem.instance(b))")
    g = gen(seed)
    k = p.k
    prior = lm.GaussianLatentPrior(k=k)
    rows = p.repeat(n_seeds)
    cfg = PSLDConfig(
        method="psld",
        num_steps=prior.alphas_cumprod.numel(),
        eta=1.0,
        omega=omega,
        gamma=gamma,
        loss="squared",
    )
    out = sample(
        prior, rows.ae.encoder, rows.ae.decoder, rows.op, rows.y, config=cfg, generator=g, latent_shape=(k,)
    )
    err = out.z - rows.w0
    total = (err**2).sum(1)
    null = (err @ N) if N is not None else err[:, :0]
    null_sq = (null**2).sum(1)
    # T7 prediction per eigendirection of M (null directions have s = 0 and run unguided)
    Q, eigs = p.Q[0], p.eigs[0]
    w = Q.T @ p.w0[0]
    m, v = lm.eigen_recursion(eigs, w, prior.alphas_cumprod, omega, gamma, ddpm=True)
    per_dir = (m - w) ** 2 + v
    m_null = 0 if N is None else N.shape[-1]
    w_null_sq = float((p.w0[0] @ N).pow(2).sum()) if N is not None else 0.0
    v0 = float(v[0]) if m_null else 1.0
    return {
        "null_sq": null_sq,
        "range_sq": total - null_sq,
        "pred_null": float(per_dir[:m_null].sum()),
        "pred_null_simple": w_null_sq + m_null,
        "pred_range": float(per_dir[m_null:].sum()),
        "se_null": math.sqrt((2 * m_null * v0**2 + 4 * v0 * w_null_sq) / n_seeds),
        "w_null_sq": w_null_sq,
        "v0": v0,
        "w0_norm_sq": float(p.w0[0].pow(2).sum()),
    }


def _se(x: Tensor) -> float:
    return float(x.std() / math.sqrt(x.numel()))


@register(NAME, "T4: rank(AS) < k leaves the null-space error untouched; full rank recovers")
@single_threaded
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    d, k, l, r, B = level_size(level, (16, 4, 8, 2, 2), (32, 6, 12, 3, 4), (64, 8, 16, 4, 8))
    n_seeds = level_size(level, 400, 2000, 8000)
    g = gen(seed)
    pdef, pfull, N = deficient_problems(d, k, l, r, batch=B, seed=g)
    rows: list[CheckResult] = []

    # 1. fixed point: every (omega, gamma, c), including steps above the bound
    fracs = torch.tensor([0.3, 0.9, 1.5], dtype=F64)
    shares = torch.tensor([0.0, 0.3], dtype=F64)
    G = len(fracs) * len(shares)
    P = pdef.repeat(G)
    NP = N.repeat_interleave(G, 0)
    frac = fracs.repeat_interleave(len(shares)).repeat(B)
    share = shares.repeat(len(fracs) * B)
    inside = frac < 1
    null_change, range_ratio, range_final = 0.0, 0.0, 0.0
    for c in (1.0, mid_c()):
        c2 = c * c
        smax = P.s_max
        omega = (1 - share) * frac / (c2 * smax)
        gamma = share * frac / (c2 * smax**2)
        z0 = torch.randn(P.batch, k, generator=g, dtype=F64) * 2
        res = null_invariance(P, NP, z0, omega=omega, gamma=gamma, c=c, n=200)
        null_change = max(null_change, float(res["null_change"].max()))
        range_ratio = max(range_ratio, float(res["range_ratio"][inside].max()))
        range_final = max(range_final, float(res["range_final"][inside & (res["rho_r"] < 0.9)].max()))
    rows.append(
        CheckResult(
            NAME,
            f"rank(AS) = {r} < k = {k}: the null-space error N^T(c z - w0) is unchanged by the guided "
            "iteration "
            "for every omega, gamma, c (steps at 0.3, 0.9, 1.5 of the bound, glue share 0 and 0.3)",
            0.0,
            null_change,
            "||N^T (e_n - e_0)|| <= 1e-12 max(||e_0||, ||e_n||)",
            bool(null_change <= 1e-12),
            {"instances": B, "d": d, "k": k, "l": l, "r": r, "iterations": 200},
        )
    )
    rows.append(
        CheckResult(
            NAME,
            "inside the bound the range part contracts at the rate of the non-zero eigenvalues",
            1.0,
            range_ratio,
            "||P_range e_n|| / (rho_r^n ||P_range e_0|| (1 + 1e-9) + 1e-12) <= 1",
            bool(range_ratio <= 1.0),
            {"max_final_range_error_(rho_r<0.9)": range_final},
        )
    )

    # 2. full chains (DDPM), one instance, many seeds in one batch
    p1, pf1, N1 = pdef.instance(0), pfull.instance(0), N[0]
    omega = 0.5 / float(p1.s_max[0])
    gamma = 0.05 / float(p1.s_max[0]) ** 2
    ch = chain_errors(p1, N1, n_seeds, omega=omega, gamma=gamma, seed=g)
    mean_null = float(ch["null_sq"].mean())
    ok_null = abs(mean_null - ch["pred_null"]) <= 4 * ch["se_null"]
    rows.append(
        CheckResult(
            NAME,
            f"full DDPM chain through psld.sample ({n_seeds} seeds, omega s_max = 0.5, "
            "gamma s_max^2 = 0.05): "
            "E||N^T(z - w0)||^2 = ||N^T w0||^2 + (k - r) v0",
            ch["pred_null"],
            mean_null,
            f"within 4 standard errors ({4 * ch['se_null']:.3g})",
            bool(ok_null),
            {
                "||w_null||^2": ch["w_null_sq"],
                "k-r": k - r,
                "v0": ch["v0"],
                "theory_md_prediction_||w_null||^2+(k-r)": ch["pred_null_simple"],
                "frac_seeds_null_error_above_0.1": float((ch["null_sq"].sqrt() > 0.1).double().mean()),
            },
        )
    )
    mean_range = float(ch["range_sq"].mean())
    se_range = _se(ch["range_sq"])
    ok_range = abs(mean_range - ch["pred_range"]) <= 4 * se_range + 1e-12
    rows.append(
        CheckResult(
            NAME,
            "full chain: the range-space error is small and equals the T7 recursion",
            ch["pred_range"],
            mean_range,
            f"within 4 standard errors ({4 * se_range:.3g})",
            bool(ok_range and ch["pred_range"] < 0.1 * ch["w0_norm_sq"]),
            {"relative_rms_range_error": math.sqrt(mean_range / ch["w0_norm_sq"])},
        )
    )

    # 3. negative: the same A0 at full rank
    om_f = 0.5 / float(pf1.s_max[0])
    ga_f = 0.05 / float(pf1.s_max[0]) ** 2
    full = chain_errors(pf1, None, n_seeds, omega=om_f, gamma=ga_f, seed=g)
    mean_full = float(full["range_sq"].mean())
    se_full = _se(full["range_sq"])
    ok_full = abs(mean_full - full["pred_range"]) <= 4 * se_full + 1e-12
    rows.append(
        CheckResult(
            NAME,
            "negative: at full rank (same A0) there is no null space and the chain recovers w0 "
            "(E||z - w0||^2 as the T7 recursion, far below the deficient case)",
            full["pred_range"],
            mean_full,
            f"within 4 standard errors ({4 * se_full:.3g}) and < the deficient null error / 10",
            bool(ok_full and mean_full < 0.1 * mean_null),
            {
                "deficient_null_error_sq": mean_null,
                "relative_rms_error": math.sqrt(mean_full / full["w0_norm_sq"]),
                "kappa_full": float(pf1.kappa[0]),
            },
        )
    )
    return rows
