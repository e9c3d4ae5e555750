"""docs/theory.md §10 (T12): sliced Wasserstein distance to the exact Gaussian-mixture posterior against the
number of steps, per method, on MCGdiff-protocol instances (d = 8, d_y = 1): the oracle (exact noised-
posterior score in the core's DDPM loop), DPS and PSLD through :func:`psld.sample`, the DPS of the MCGdiff
code (its eta), and the Monte Carlo floor (two exact sample sets).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from figures._common import pyplot, save
from linear_model.gmm_benchmark import mcgdiff_problem, sliced_wasserstein
from verification.gmm_methods import mcgdiff_alphas_cumprod, mcgdiff_dps, mcgdiff_timesteps, run_method

NAME = "posterior_calibration"
D, DY = 8, 1


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def measure(n_problems: int, n: int, steps) -> dict:
    """SW per method and step count, ``[problems, steps]`` arrays, and the floor per problem."""
    methods = ("oracle", "dps", "psld", "dps (MCGdiff code)")
    sw = {m: np.zeros((n_problems, len(steps))) for m in methods}
    floor = np.zeros(n_problems)
    ac = mcgdiff_alphas_cumprod()
    for i in range(n_problems):
        p = mcgdiff_problem(D, DY, _gen(7000 + i))
        ref = p.posterior.sample(n, _gen(i + 1))
        floor[i] = sliced_wasserstein(p.posterior.sample(n, _gen(i + 2)), ref, generator=_gen(i + 3))
        for j, s in enumerate(steps):
            for m in methods[:3]:
                z, _ = run_method(p, m, num_steps=s, eta=1.0, n=n, generator=_gen(i + 4))
                sw[m][i, j] = sliced_wasserstein(z, ref, generator=_gen(i + 3))
            ts = mcgdiff_timesteps(ac, p.singular_values, s, p.sigma_y**2)
            eta = 0.6 if s <= 20 else 0.85
            z = mcgdiff_dps(
                p.prior, p.A, p.y, n=n, eta=eta, timesteps=ts, alphas_cumprod=ac, generator=_gen(i + 4)
            )
            sw[methods[3]][i, j] = sliced_wasserstein(z, ref, generator=_gen(i + 3))
    return dict(sw=sw, floor=floor)


def make(out_dir: Path, quick: bool) -> list[Path]:
    plt = pyplot()
    n_problems, n, steps = (2, 300, (10, 30, 100)) if quick else (8, 2000, (10, 20, 50, 100, 200, 500, 1000))
    res = measure(n_problems, n, steps)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    styles = {
        "oracle": ("k", "o", r"oracle: exact $\nabla\log p_t(x_t\,|\,y)$, DDPM ($\eta=1$)"),
        "dps": ("tab:blue", "s", r"DPS, $\omega=0.2$, DDPM ($\eta=1$)"),
        "psld": ("tab:orange", "^", r"PSLD, $\omega=0.2$, $\gamma=0.1$, $x = Sz$, DDPM"),
        "dps (MCGdiff code)": ("tab:red", "v", r"DPS as the MCGdiff code ($\eta$ 0.6 / 0.85)"),
    }
    for m, arr in res["sw"].items():
        color, marker, label = styles[m]
        mean = arr.mean(0)
        ci = 1.96 * arr.std(0) / np.sqrt(arr.shape[0])
        ax.errorbar(steps, mean, yerr=ci, color=color, marker=marker, ms=5, capsize=3, lw=1.2, label=label)
    f = res["floor"]
    ax.axhspan(
        f.mean() - 1.96 * f.std() / np.sqrt(len(f)),
        f.mean() + 1.96 * f.std() / np.sqrt(len(f)),
        color="gray",
        alpha=0.3,
        lw=0,
    )
    ax.axhline(
        f.mean(),
        color="gray",
        ls="--",
        lw=1,
        label="Monte Carlo floor, two exact sample sets (band: ±1.96 s.e.)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of sampling steps")
    ax.set_ylabel(r"sliced $W_1$ to the exact posterior")
    ax.set_title(
        rf"Gaussian-mixture posterior, MCGdiff protocol ($d={D}$, $d_y={DY}$, {n_problems} problems, "
        rf"{n} samples; mean $\pm$ 1.96 s.e.)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=1, fontsize=7.5, frameon=False)
    fig.subplots_adjust(bottom=0.3)
    return save(fig, out_dir, NAME)
