"""Shared plumbing for the figure modules: the Agg pyplot and saving one figure as PNG + PDF."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (call inside ``make``, before plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``fig`` as ``out_dir/name.png`` (150 dpi) and a vector ``.pdf`` (rasterized layers at 150 dpi),
    close it, return the two paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    if not fig.legends:  # figure-level legends are placed by hand (outside the axes)
        fig.tight_layout()
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], dpi=150, bbox_inches="tight")  # dpi of rasterized layers only
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths
