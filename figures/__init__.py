"""Figures of docs/theory.md §9, drawn from the verification measurements and the closed-form predictions.

Each figure lives in its own module with ``make(out_dir: Path, quick: bool) -> list[Path]``, which writes a
PNG and a PDF (matplotlib Agg backend). Run them all with ``python -m figures [--out DIR] [--quick]
[--only NAME ...]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

#: figure name -> docs/theory.md §9 item it draws
FIGURES: dict[str, str] = {
    "stability_region": "§9.3 (omega, gamma) stability region for PSLD",
    "critical_step": "§9.2 critical step against d",
    "phase_transition": "§9.4 recovery phase transition against l/k",
    "off_manifold": "§9.8 off-manifold energy of pixel samples against d",
    "unsquared_loss": "T11 residual floor of the unsquared loss against the step, several omega",
    "posterior_calibration": "§10 (T12) sliced W1 to the exact mixture posterior against steps, per method",
    "taesd_fixed_point": "§11 (T13) TAESD fixed-point residual on vs off the image manifold (needs weights)",
}


def maker(name: str) -> Callable[[Path, bool], list[Path]]:
    """The ``make`` function of figure ``name`` (imported lazily: torch work only when asked for)."""
    if name not in FIGURES:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    return importlib.import_module(f"figures.{name}").make


__all__ = ["FIGURES", "maker"]
