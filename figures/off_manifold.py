"""docs/theory.md §9.8: off-manifold energy ``E||(I - P) x||^2`` of guided pixel DPS chains stopped at
``t_min`` against d, measured by :func:`verification.checks.t6_pixel_latent.off_manifold_energy` (chains run
through the sampler), with the line ``(d - k)(1 - abar_{t_min})`` (:func:`linear_model.off_manifold_energy`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import linear_model as lm
from figures._common import pyplot, save
from verification.checks.t6_pixel_latent import off_manifold_energy

NAME = "off_manifold"
K, L, T_MIN = 8, 16, 20


def make(out_dir: Path, quick: bool) -> list[Path]:
    plt = pyplot()
    dims = (16, 64, 256) if quick else (16, 64, 256, 1024)
    n_chains, steps = (16, 100) if quick else (128, 1000)
    rows = [
        off_manifold_energy(d, K, L, seed=300 + d, n_chains=n_chains, t_min=T_MIN, num_steps=steps)
        for d in dims
    ]
    abar = rows[0]["abar"]
    dd = np.arange(dims[0], dims[-1] + 1)  # every integer d: the closed form is exact there, no staircase
    line = [float(lm.off_manifold_energy(int(d), K, abar)) for d in dd]

    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    ax.loglog(
        dd, line, "-", color="k", label=rf"$(d-k)(1-\bar\alpha_{{t_{{min}}}})$, $\bar\alpha$={abar:.4f}"
    )
    ax.errorbar(
        dims,
        [r["measured"] for r in rows],
        yerr=[r["sd"] for r in rows],
        fmt="o",
        ms=7,
        capsize=4,
        label=f"measured, mean of {n_chains} pixel DPS chains (±1 MC sd)",
    )
    ax.set_xlabel("ambient dimension d")
    ax.set_ylabel(r"off-manifold energy $\mathbb{E}\,\|(I-P)\,x_{t_{min}}\|^2$")
    ax.set_title(
        rf"Off-manifold energy at early stopping $t_{{min}}={T_MIN}$ ($k={K}$, $l={L}$, {steps} steps)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return save(fig, out_dir, NAME)
