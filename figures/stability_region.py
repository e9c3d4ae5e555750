"""docs/theory.md §9.3: the (omega, gamma) stability region of the PSLD guided fixed-point iteration (T3).

Heat map of the closed-form rate ``rho = max_j |1 - 2 (omega s_j + gamma s_j^2)|``
(:func:`linear_model.contraction_rate`, ``c = 1``) over ``(omega s_max, gamma s_max^2)`` on one random
instance (k=8, l=16, d=64), the boundary ``omega s_max + gamma s_max^2 = 1``, and markers from the core's
guided map (:func:`verification.fixed_point.iterate`, all grid points as one batch): the error
``||z_n - w0||`` after ``n`` iterations either fell below its start (converging) or grew / blew up.
"""

from __future__ import annotations

from pathlib import Path

import torch

import linear_model as lm
from figures._common import pyplot, save
from verification.checks.t3_contraction import F64, gen, random_problems
from verification.fixed_point import iterate

NAME = "stability_region"
D, K, L = 64, 8, 16
UMAX = 1.5  # axes run over omega s_max and gamma s_max^2 in [0, UMAX]


def measured(p, u: torch.Tensor, v: torch.Tensor, *, n: int, seed: int) -> torch.Tensor:
    """``True`` where the guided map at ``omega = u/s_max``, ``gamma = v/s_max^2`` reduced ``||z - w0||``
    after ``n`` iterations (one batched run of the core's iteration; divergent rows are frozen)."""
    rows = p.repeat(u.numel())
    s = float(p.s_max[0])
    g = gen(seed)
    z0 = rows.w0 + torch.randn(rows.batch, rows.k, generator=g, dtype=F64)
    e0 = (z0 - rows.w0).norm(dim=1)
    zn = iterate(
        z0,
        rows.ae.encoder,
        rows.ae.decoder,
        rows.op,
        rows.y,
        omega=u.reshape(-1) / s,
        gamma=v.reshape(-1) / s**2,
        n=n,
        method="psld",
        blowup=1e6 * float(z0.norm(dim=1).max()),
    )
    en = (zn - rows.w0).norm(dim=1)
    return (torch.isfinite(en) & (en < e0)).reshape(u.shape)


def make(out_dir: Path, quick: bool) -> list[Path]:
    plt = pyplot()
    seed = 0
    p = random_problems(D, K, L, seed=seed).instance(0)
    s_max = float(p.s_max[0])
    eigs = p.eigs[0]

    res = 121 if quick else 301
    axis = torch.linspace(0.0, UMAX, res, dtype=F64)
    V, U = torch.meshgrid(axis, axis, indexing="ij")  # rows: gamma, columns: omega
    rho = lm.contraction_rate(eigs, (U / s_max).unsqueeze(-1), (V / s_max**2).unsqueeze(-1))

    n_grid, n_iter = 8, 300
    coarse = 0.05 + (UMAX - 0.1) * torch.arange(n_grid, dtype=F64) / (n_grid - 1)
    cv, cu = torch.meshgrid(coarse, coarse, indexing="ij")
    ok = measured(p, cu, cv, n=n_iter, seed=seed + 1)

    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(6.4, 6.4))
    # diverging scale centred on rho = 1: the stable region gets its own half of the map, so its shading shows
    # how fast each (omega, gamma) contracts instead of one flat colour; the image is rasterized (small PDF)
    norm = TwoSlopeNorm(vmin=float(rho.min()), vcenter=1.0, vmax=2.0)
    im = ax.pcolormesh(
        U.numpy(),
        V.numpy(),
        rho.clamp(max=2.0).numpy(),
        shading="auto",
        cmap="RdBu_r",
        norm=norm,
        rasterized=True,
    )
    fig.colorbar(im, ax=ax, label=r"closed-form rate $\rho$ (clipped at 2; $\rho < 1$ contracts)")
    levels, styles = [0.9, 0.99], ["--", ":"]
    ax.contour(
        U.numpy(), V.numpy(), rho.numpy(), levels=levels, colors="k", linewidths=0.9, linestyles=styles
    )
    line = torch.linspace(0.0, 1.0, 2)
    ax.plot(line, 1 - line, "-", color="darkred", lw=2)
    cu_, cv_ = cu.numpy(), cv.numpy()
    okn = ok.numpy()
    ax.scatter(cu_[okn], cv_[okn], marker="o", s=30, facecolor="white", edgecolor="k", zorder=3)
    ax.scatter(cu_[~okn], cv_[~okn], marker="x", s=34, color="k", zorder=3)
    handles = [
        Line2D([], [], color="darkred", lw=2, label=r"boundary $\omega s_{max} + \gamma s_{max}^2 = 1$"),
        *(
            Line2D([], [], color="k", lw=0.9, ls=st, label=rf"contour $\rho = {lv:g}$")
            for lv, st in zip(levels, styles, strict=True)
        ),
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            mfc="white",
            mec="k",
            label=f"core's map: error fell after {n_iter} steps",
        ),
        Line2D([], [], ls="", marker="x", color="k", label="core's map: error grew / blew up"),
    ]
    ax.set_xlim(0, UMAX)
    ax.set_ylim(0, UMAX)
    ax.set_xlabel(r"$\omega\, s_{max}$ (measurement step)")
    ax.set_ylabel(r"$\gamma\, s_{max}^2$ (gluing step)")
    ax.set_title(
        rf"PSLD fixed-point stability ($d={D}$, $k={K}$, $l={L}$, $\kappa={float(p.kappa[0]):.1f}$)",
        fontsize=10,
    )
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7.5, frameon=False)
    fig.subplots_adjust(bottom=0.2)
    return save(fig, out_dir, NAME)
