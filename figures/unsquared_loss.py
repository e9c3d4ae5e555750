"""T11: the unsquared (official) loss stalls at a residual floor. Residual ``||A D(z0hat) - y||`` against
the step for several omega, in the guided fixed-point iteration (c = 1) and along the full DDIM chain
(:mod:`verification.checks.t11_unsquared_loss`, run through the sampler), with the predicted floors
``omega c^2 s_max / 2`` dashed and the squared loss inside its bound for contrast.
"""

from __future__ import annotations

from pathlib import Path

import torch

from figures._common import pyplot, save
from verification.checks import t11_unsquared_loss as t11
from verification.checks.t3_contraction import F64, random_problems
from verification.fixed_point import iterate

NAME = "unsquared_loss"
FRACS = (0.05, 0.1, 0.2, 0.4)


def _pair_mean(trace: torch.Tensor) -> torch.Tensor:
    """``(r_n + r_{n+1}) / 2``: the 2-cycle's mean, which sits on the floor (raw residuals drawn faintly)."""
    return (trace[1:] + trace[:-1]) / 2


def make(out_dir: Path, quick: bool) -> list[Path]:
    plt = pyplot()
    n_fp, steps = (400, 250) if quick else (1500, 1000)
    p = random_problems(32, 8, 16, seed=11, kappa_max=20.0)
    smax = float(p.s_max[0])
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11.0, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    z0 = torch.randn(1, p.k, generator=torch.Generator().manual_seed(12), dtype=F64) * 2
    for frac, color in zip(FRACS, colors, strict=False):
        omega = torch.tensor([frac / smax], dtype=F64)
        fp = t11.fixed_point_floor(p, omega, c=1.0, n=n_fp, window=2, z0=z0)
        tr = fp["trace"][:, 0]
        ax0.semilogy(range(1, n_fp + 1), tr, color=color, lw=0.5, alpha=0.35)
        ax0.semilogy(
            range(2, n_fp + 1), _pair_mean(tr), color=color, lw=1.2, label=rf"$\omega s_{{max}} = {frac}$"
        )
        ax0.axhline(float(fp["predicted"][0]), color=color, ls="--", lw=1.2)
        ch = t11.chain_floor(p, frac / smax, num_steps=steps, window=max(steps // 10, 2), seed=13)
        tr = ch["trace"][:, 0].double()
        ax1.semilogy(range(1, steps + 1), tr, color=color, lw=0.5, alpha=0.35)
        ax1.semilogy(
            range(2, steps + 1), _pair_mean(tr), color=color, lw=1.2, label=rf"$\omega s_{{max}} = {frac}$"
        )
        ax1.semilogy(range(1, steps + 1), frac * ch["kick"] / 2, color=color, ls="--", lw=1.2)
    sq = t11.squared_converges(p, c=1.0, frac=0.5, z0=z0)
    trace, z = [], z0
    for _ in range(min(sq["n"], n_fp)):
        z = iterate(z, p.ae.encoder, p.ae.decoder, p.op, p.y, omega=0.5 / smax, n=1, method="ldps", c=1.0)
        trace.append(float(t11.residual(p, z, 1.0)))
    ax0.semilogy(
        range(1, len(trace) + 1), trace, color="k", lw=1.0, label=r"squared loss, $\omega s_{max} = 0.5$"
    )
    ax0.set_xlabel("iteration n (fixed point, c = 1)")
    ax0.set_xlabel(r"iteration $n$ (fixed point, $c = 1$)")
    ax1.set_xlabel(rf"DDIM step ({steps} steps, exact $\mathcal{{N}}(0, I)$ latent prior)")
    ax0.set_title(r"guided fixed point: the norm loss stalls at $\omega s_{max}/2$", fontsize=9)
    ax1.set_title(r"full chain: floor $\omega s_{max} c_t c_{t-1}/2$", fontsize=9)
    from matplotlib.lines import Line2D

    key = [
        Line2D(
            [], [], color="gray", lw=0.5, alpha=0.5, label=r"raw $r_n$ (pale band: the 2-cycle's two values)"
        ),
        Line2D([], [], color="gray", lw=1.2, label=r"$(r_n + r_{n+1})/2$"),
        Line2D([], [], color="gray", lw=1.2, ls="--", label="predicted floor"),
    ]
    fig.legend(handles=key, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.22)
    for ax in (ax0, ax1):
        ax.set_ylabel(r"residual $\|A\,D(\hat z_0) - y\|$")
        ax.set_ylim(1e-16 if ax is ax0 else 1e-3, None)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    return save(fig, out_dir, NAME)
