"""T9 (docs/theory.md T9): the recovery phase transition, ``w0`` is recovered iff ``rank(AS) = k``.

Recovery is decided through the sampler's own guidance map (:func:`verification.fixed_point`), per trial,
with the trials of one ``l`` batched as instances (``MatrixOperator`` with ``A`` ``[N, l, d]``):

* **Gaussian A** (``N(0, 1/l)``, random orthonormal ``S``). The guided map is affine,
  ``g(z) = 2(M z - B^T y)``; it is read off through :func:`verification.fixed_point.guided_map_gradients`
  (``k + 1`` evaluations) and the limit of the fixed-point iteration started at ``z = 0`` is computed
  exactly: ``z_inf = M^+ B^T y`` (iterates stay in ``range(M)``, where the map contracts for any step
  below ``1/s_max``; ``null(M)`` keeps its start 0). Iterating to that limit would need
  ``n ~ log(tol)/log((kappa - 1)/(kappa + 1)) ~ 7 kappa`` steps, and ``kappa`` runs to 1e4-1e6 near
  ``l = k``, so the exact limit replaces the iteration. Success: ``||z_inf - w0|| <= 1e-6 ||w0||``.
* **Row mask with a coordinate subspace** ``S = I[:, support]``: ``M`` is diagonal with entries in {0, 1},
  so the exact rate at ``omega = 1/2`` is ``rho = 0`` and one guided iteration from ``z = 0`` reaches the
  limit; it runs through :func:`verification.fixed_point.iterate`. The success probability is
  hypergeometric, ``C(d - k, l - k)/C(d, l)`` (:func:`linear_model.mask_recovery_probability`).

Negative case: for ``l < k`` success is exactly 0 in both families.
"""

from __future__ import annotations

import torch
from torch import Tensor

import linear_model as lm
from psld.operators import MatrixOperator
from verification.checks.t7_full_chain import F64, gen
from verification.fixed_point import guided_map_gradients, iterate
from verification.result import CheckResult, level_size, register

NAME = "t9-phase-transition"
TOL = 1e-6


def guided_limit(S: Tensor, A: Tensor, y: Tensor, *, rtol: float = 1e-10) -> tuple[Tensor, Tensor]:
    """Limit of the guided fixed-point iteration from ``z = 0`` for each instance (``S`` ``[N, d, k]``,
    ``A`` ``[N, l, d]``, ``y`` ``[N, l]``), from the affine map read off the sampler's guidance gradient.

    Returns ``(z_inf, fixed_point_residual)``: the minimum-norm solution ``M^+ B^T y`` (pseudo-inverse with
    relative cutoff ``rtol``) and ``||z_inf - iterate(z_inf, n=1)||/||z_inf||`` at
    ``omega = 1/(2 s_max)``.
    """
    ae = lm.SubspaceAutoencoder(S)
    op = MatrixOperator(A)
    n, k = S.shape[0], S.shape[-1]
    z = torch.zeros(n, k, dtype=F64)
    g0, _ = guided_map_gradients(z, ae.encoder, ae.decoder, op, y, method="ldps")
    cols = []
    for j in range(k):
        e = torch.zeros(n, k, dtype=F64)
        e[:, j] = 1.0
        gj, _ = guided_map_gradients(e, ae.encoder, ae.decoder, op, y, method="ldps")
        cols.append(0.5 * (gj - g0))
    M = torch.stack(cols, dim=-1)
    M = 0.5 * (M + M.transpose(-1, -2))
    b = -0.5 * g0
    z_inf = (torch.linalg.pinv(M, rtol=rtol, hermitian=True) @ b.unsqueeze(-1)).squeeze(-1)
    s_max = torch.linalg.eigvalsh(M)[:, -1].clamp_min(1e-300)
    z1 = iterate(z_inf, ae.encoder, ae.decoder, op, y, omega=0.5 / s_max, n=1, method="ldps")
    fp = (z1 - z_inf).norm(dim=1) / z_inf.norm(dim=1).clamp_min(1e-300)
    return z_inf, fp


def gaussian_success(k: int, l: int, d: int, *, seed: int = 0, n_trials: int = 500) -> dict:
    """Fraction of Gaussian-``A`` trials whose guided limit recovers ``w0`` (relative error <= 1e-6)."""
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g, batch=n_trials)
    A = lm.gaussian_matrix(l, d, seed=g, batch=n_trials)
    w0 = torch.randn(n_trials, k, generator=g, dtype=F64)
    y = lm.measure(A, lm.SubspaceAutoencoder(S).decode(w0))
    z, fp = guided_limit(S, A, y)
    ok = (z - w0).norm(dim=1) <= TOL * w0.norm(dim=1)
    rank = lm.spectrum(A, S).rank
    return dict(
        rate=float(ok.double().mean()),
        success=ok,
        full_rank=rank == k,
        max_fixed_point_residual=float(fp[ok].max()) if bool(ok.any()) else 0.0,
    )


def mask_success(d: int, k: int, l: int, *, seed: int = 0, n_trials: int = 2000, chunk: int = 1000) -> dict:
    """Fraction of (random support, random ``l``-row mask) trials recovered by one guided iteration at
    ``omega = 1/2`` from ``z = 0``; with the hypergeometric prediction and its binomial standard error."""
    g = gen(seed)
    hits = 0
    done = 0
    while done < n_trials:
        n = min(chunk, n_trials - done)
        S = lm.coordinate_basis(d, k, seed=g, batch=n)
        A = lm.row_mask_matrix(l, d, seed=g, batch=n)
        w0 = torch.randn(n, k, generator=g, dtype=F64)
        ae = lm.SubspaceAutoencoder(S)
        y = lm.measure(A, ae.decode(w0))
        z = iterate(
            torch.zeros(n, k, dtype=F64),
            ae.encoder,
            ae.decoder,
            MatrixOperator(A),
            y,
            omega=0.5,
            n=1,
            method="ldps",
        )
        hits += int(((z - w0).norm(dim=1) <= TOL * w0.norm(dim=1)).sum())
        done += n
    p = lm.mask_recovery_probability(d, k, l)
    return dict(predicted=p, measured=hits / n_trials, se=(p * (1 - p) / n_trials) ** 0.5, n=n_trials)


@register(
    NAME, "T9: recovery iff rank(AS) = k: sharp at l = k (Gaussian), hypergeometric (mask + coordinates)"
)
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    k, d = 8, 64
    n_gauss = level_size(level, 200, 1000, 4000)
    n_mask = level_size(level, 600, 2000, 10000)
    rows: list[CheckResult] = []

    ls = list(range(4, 17))
    rates = {l: gaussian_success(k, l, d, seed=seed + l, n_trials=n_gauss) for l in ls}
    below = max(rates[l]["rate"] for l in ls if l < k)
    above = min(rates[l]["rate"] for l in ls if l > k)
    fp = max(rates[l]["max_fixed_point_residual"] for l in ls)
    rows.append(
        CheckResult(
            NAME,
            "Gaussian A, k=8: success 0 for l < k and ~1 for l >= k+1 (guided-map limit)",
            "0 below k, 1 above",
            f"max {below:g} below, min {above:g} above",
            "below == 0 and above >= 0.99",
            bool(below == 0.0 and above >= 0.99),
            dict(
                rates={l: rates[l]["rate"] for l in ls},
                trials=n_gauss,
                d=d,
                at_l_eq_k=rates[k]["rate"],
                theory_md_at_l_eq_k=0.90,
                max_fixed_point_residual=fp,
                note="docs/theory.md T9: 0.90 at l = k is a finite-iteration effect (n capped at 2e5); "
                "the exact limit "
                "recovers every full-rank trial",
            ),
        )
    )

    mask_ls = (48, 56, 60, 64)
    for l in mask_ls:
        r = mask_success(d, k, l, seed=seed + 1000 + l, n_trials=n_mask)
        dev = abs(r["measured"] - r["predicted"])
        rows.append(
            CheckResult(
                NAME,
                f"row mask + coordinate subspace, d=64, k=8, l={l}: P(success) = C(d-k, l-k)/C(d, l)",
                r["predicted"],
                r["measured"],
                "within 3 binomial SE",
                dev <= 3 * r["se"] + 1e-12,
                dict(se=r["se"], trials=n_mask),
            )
        )

    neg_g = max(rates[l]["rate"] for l in ls if l < k)
    neg_m = max(
        mask_success(d, k, l, seed=seed + 2000 + l, n_trials=min(n_mask, 500))["measured"] for l in (2, 5, 7)
    )
    rows.append(
        CheckResult(
            NAME,
            "negative: for l < k success is exactly 0 in both families",
            0.0,
            max(neg_g, neg_m),
            "exactly 0",
            neg_g == 0.0 and neg_m == 0.0,
            dict(gaussian_l=[l for l in ls if l < k], mask_l=[2, 5, 7]),
        )
    )
    return rows
