"""docs/theory.md §11 (T13): the fixed-point residual ``||E(D(z)) - z||/||z||`` of TAESD for encodings of
photographs (several crop sizes) against latents off the image manifold (encodings plus noise of growing size,
``N(0, I)`` latents). Needs TAESD weights (:mod:`verification.taesd`); without them it draws nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from figures._common import pyplot, save

NAME = "taesd_fixed_point"


def make(out_dir: Path, quick: bool) -> list[Path]:
    from verification import taesd
    from verification.checks.t13_taesd_gluing import NOISE_LEVELS, fixed_point_residuals

    folder = taesd.taesd_folder()
    if folder is None:
        print(f"# {NAME}: skipped, no TAESD weights (set PSLD_TAESD)", file=sys.stderr)
        return []
    _, E, D = taesd.load(folder)
    count, sizes = (3, (64, 128)) if quick else (12, (64, 128, 256))
    fp = fixed_point_residuals(E, D, count=count, sizes=sizes, per_image=True)
    every = fp["all"]
    labels = (
        [f"photo\n{s} px" for s in sizes]
        + [f"+{s:g} sd\nnoise" for s in NOISE_LEVELS]
        + [r"$\mathcal{N}(0,I)$"]
    )
    keys = [f"on {s}" for s in sizes] + [f"noise {s}" for s in NOISE_LEVELS] + ["gaussian"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    for i, key in enumerate(keys):
        vals = np.asarray(every[key])
        color = "tab:blue" if key.startswith("on") else "tab:red"
        jitter = np.linspace(-0.15, 0.15, len(vals))
        ax.plot(i + jitter, vals, "o", ms=3.5, color=color, alpha=0.6)
        ax.plot([i - 0.3, i + 0.3], [np.median(vals)] * 2, color="k", lw=2)
    ax.set_xticks(range(len(keys)), labels, fontsize=8)
    ax.axvline(len(sizes) - 0.5, color="gray", ls=":", lw=1)
    ax.set_ylabel(r"fixed-point residual $\|E(D(z)) - z\| / \|z\|$")
    ax.set_ylim(0, None)
    ax.set_title(
        rf"TAESD: encodings $z = E(x)$ of photographs (blue) vs latents off the manifold (red: the "
        rf"{sizes[0]} px encodings plus noise, in units of their sd {fp['latent_std']:.2f}); bar: median",
        fontsize=8.5,
    )
    ax.grid(True, axis="y", alpha=0.3)
    return save(fig, out_dir, NAME)
