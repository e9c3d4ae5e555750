"""docs/theory.md §9.2: the critical (largest contracting) fixed-point step against the dimension d (T6).

For each d one Gaussian instance (k=8, l=16) and the empirical thresholds of
:func:`verification.checks.t6_pixel_latent.step_thresholds` (bracketed divergence of the core's guided
map) for the latent, pixel-exact and pixel-ridge (eps=1e-3) chains, normalised by the latent theory
``1/(abar lambda_max(M))``: latent and pixel-exact stay at 1, the ridge falls like
``lambda_max(M)/lambda_max(A^T A)`` (overlay, per instance and as the random-matrix prediction
``(sqrt l + sqrt k)^2/(sqrt d + sqrt l)^2`` of :func:`~verification.checks.t6_pixel_latent.lambda_ratio`).
"""

from __future__ import annotations

from pathlib import Path

from figures._common import pyplot, save
from verification.checks.t6_pixel_latent import lambda_ratio, step_thresholds

NAME = "critical_step"
K, L = 8, 16


def make(out_dir: Path, quick: bool) -> list[Path]:
    plt = pyplot()
    dims = (16, 64, 256) if quick else (16, 64, 256, 1024)
    kw = dict(iters=(60, 300, 300), grid=13, n_starts=2) if quick else dict(iters=(100, 1000, 1000), grid=33)
    rows = [step_thresholds(d, K, L, seed=100 + d, **kw) for d in dims]
    norm = [r["theory_latent"] for r in rows]  # 1/(abar lambda_max(M)) per instance

    def series(key: str) -> list[float]:
        return [r[key] / n for r, n in zip(rows, norm, strict=True)]

    inst_ratio = [r["s_max"] / r["lam_AtA"] for r in rows]
    pred = [1.0 / lambda_ratio(d, K, L, seed=200 + d, n_inst=8 if quick else 32)["predicted"] for d in dims]

    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    ax.loglog(dims, series("latent"), "o-", ms=8, label="latent (measured)")
    ax.loglog(dims, series("pixel_exact"), "s--", ms=5, mfc="none", label="pixel, exact denoiser (measured)")
    ax.loglog(dims, series("ridge"), "^-", ms=7, label=r"pixel, ridge $\varepsilon=10^{-3}$ (measured)")
    ax.loglog(dims, series("theory_ridge"), "k+", ms=10, label=r"ridge theory $1/\lambda_{max}(V^T A^T A V)$")
    ax.loglog(
        dims, inst_ratio, ":", color="gray", lw=2, label=r"$\lambda_{max}(M)/\lambda_{max}(A^T A)$ (instance)"
    )
    ax.loglog(
        dims,
        pred,
        "-.",
        color="tab:red",
        lw=1,
        label=r"$(\sqrt{l}+\sqrt{k})^2/(\sqrt{d}+\sqrt{l})^2$ (predicted)",
    )
    ax.set_xlabel("ambient dimension d")
    ax.set_ylabel(r"critical step $\times\ \bar\alpha\,\lambda_{max}(M)$")
    ax.set_title(
        f"Critical fixed-point step against d (k={K}, l={L}, one Gaussian instance per d)", fontsize=9
    )
    ax.set_xticks(dims)
    ax.set_xticklabels([str(d) for d in dims])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return save(fig, out_dir, NAME)
