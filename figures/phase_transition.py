"""docs/theory.md §9.4: recovery probability against l/k (T9), k=8, d=64.

Gaussian A: fraction of trials whose guided-map limit recovers ``w0``
(:func:`verification.checks.t9_phase_transition.gaussian_success`), sharp at l = k. Row mask + coordinate
subspace: fraction recovered by the guided iteration
(:func:`~verification.checks.t9_phase_transition.mask_success`) against the hypergeometric
``C(d-k, l-k)/C(d, l)`` (:func:`linear_model.mask_recovery_probability`).
"""

from __future__ import annotations

from pathlib import Path

import linear_model as lm
from figures._common import pyplot, save
from verification.checks.t9_phase_transition import gaussian_success, mask_success

NAME = "phase_transition"
K, D = 8, 64


def make(out_dir: Path, quick: bool) -> list[Path]:
    plt = pyplot()
    n_gauss, n_mask = (50, 200) if quick else (500, 2000)
    g_ls = list(range(2, 25, 2)) if quick else list(range(1, 25))
    m_ls = list(range(8, D + 1, 8)) if quick else list(range(8, D + 1, 4))
    gauss = [gaussian_success(K, l, D, seed=l, n_trials=n_gauss)["rate"] for l in g_ls]
    mask = [mask_success(D, K, l, seed=1000 + l, n_trials=n_mask) for l in m_ls]
    all_l = list(range(0, D + 1))
    hyper = [lm.mask_recovery_probability(D, K, l) for l in all_l]

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.step(
        [0, 1, D / K],
        [0, 1, 1],
        where="post",
        color="tab:blue",
        lw=1,
        alpha=0.6,
        label=r"Gaussian theory: 1 iff $l \geq k$",
    )
    ax.plot(
        [l / K for l in g_ls], gauss, "o", color="tab:blue", label=f"Gaussian A, measured ({n_gauss} trials)"
    )
    ax.plot(
        [l / K for l in all_l], hyper, "-", color="tab:orange", label=r"mask: $\binom{d-k}{l-k}/\binom{d}{l}$"
    )
    ax.errorbar(
        [l / K for l in m_ls],
        [r["measured"] for r in mask],
        yerr=[2 * r["se"] for r in mask],
        fmt="s",
        color="tab:orange",
        mfc="none",
        capsize=3,
        label=f"mask + coordinate subspace, measured ({n_mask} trials, ±2 SE)",
    )
    ax.axvline(1.0, color="gray", ls=":", lw=1, label="$l = k$ (Gaussian threshold)")
    ax.set_xlabel(r"measurements per latent dimension $l/k$")
    ax.set_ylabel("recovery probability")
    ax.set_title(rf"Recovery phase transition ($k={K}$, $d={D}$)", fontsize=10)
    ax.set_xlim(0, D / K)
    ax.set_ylim(-0.03, 1.05)
    ax.grid(True, alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.subplots_adjust(bottom=0.3)
    return save(fig, out_dir, NAME)
