"""Summary tables and comparison figures of :func:`psld.evaluate`.

**Summary** (``summary.md``, ``summary.csv``): per (task, method) the number of images and mean ± std
(population std) of PSNR, SSIM, residual and seconds. Within each task the best method per column is
marked: bold in Markdown, listed in the CSV's ``best`` column (higher PSNR/SSIM, lower residual).
A run that raised :class:`psld.DivergenceError` is a row with ``diverged`` (the message) and no metrics:
``n`` and the means count the other runs, the ``diverged`` column counts these, and the figure cell
says so.

**Figure** (``figures/<task>.png`` and ``.pdf``, matplotlib Agg): rows = images (at most
``FIGURE_ROWS``, in order), columns = ground truth | measurement | each method, labelled (column titles
on top, image names on the left; the measurement of a super-resolution task is shown enlarged by
nearest neighbour). The PNG is exactly ``LABEL_PX + CELL_PX * columns`` wide and
``TITLE_PX + CELL_PX * rows`` high (``DPI`` dots per inch), so it grows by ``CELL_PX`` per image and
per method.
"""

from __future__ import annotations

import csv
import io
import math
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from psld.files import atomic_write, atomic_write_text

__all__ = ["summarize", "markdown", "write_reports", "figure", "figure_size", "METRICS"]

METRICS = ("psnr", "ssim", "residual", "seconds")
HIGHER_BETTER = {"psnr": True, "ssim": True, "residual": False}
FIGURE_ROWS = 8
CELL_PX, LABEL_PX, TITLE_PX, DPI = 150, 100, 30, 100


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    """Mean and population std over the values present (``None``: a diverged run); NaN when none is."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return (float(a.mean()), float(a.std())) if a.size else (math.nan, math.nan)


def summarize(rows: list[dict]) -> list[dict]:
    """One dict per (task, method), in first-seen order: ``n``, ``<metric>_mean``/``_std``, ``best``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"]), []).append(r)
    table: list[dict[str, Any]] = []
    for (task, method), rs in groups.items():
        diverged = sum(1 for r in rs if r.get("diverged"))
        entry: dict[str, Any] = {
            "task": task,
            "method": method,
            "n": len(rs) - diverged,
            "diverged": diverged,
        }
        for m in METRICS:
            entry[f"{m}_mean"], entry[f"{m}_std"] = _mean_std([r[m] for r in rs])
        entry["best"] = []
        table.append(entry)
    for task in {e["task"] for e in table}:
        group = [e for e in table if e["task"] == task]
        for m, higher in HIGHER_BETTER.items():
            values = [e[f"{m}_mean"] for e in group if not math.isnan(e[f"{m}_mean"])]
            if not values:
                continue
            best = max(values) if higher else min(values)
            for e in group:
                if e[f"{m}_mean"] == best:
                    e["best"].append(m)
    return table


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "–"  # no run of this (task, method) finished without diverging
    if math.isinf(x):
        return "inf"
    return f"{x:.4g}" if abs(x) < 1e-2 else f"{x:.3f}" if abs(x) < 10 else f"{x:.2f}"


def markdown(table: list[dict], notes: dict[str, str]) -> str:
    """The summary as a Markdown table (best per task in bold) plus one line per absent metric."""
    lines = [
        "| task | method | n | PSNR (dB) | SSIM | residual | seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for e in table:
        cells = []
        for m in METRICS:
            text = f"{_fmt(e[f'{m}_mean'])} ± {_fmt(e[f'{m}_std'])}"
            cells.append(f"**{text}**" if m in e["best"] else text)
        lines.append(f"| {e['task']} | {e['method']} | {e['n']} | " + " | ".join(cells) + " |")
    for e in table:
        if e["diverged"]:
            lines.append(
                f"\n{e['task']} / {e['method']}: {e['diverged']} run(s) diverged (DivergenceError); "
                "n and the means count the others; see `diverged` in results.jsonl."
            )
    by_reason: dict[str, list[str]] = {}
    for metric, reason in notes.items():
        by_reason.setdefault(reason, []).append(metric)
    lines.append("")
    for reason, metrics in by_reason.items():
        lines.append(f"{', '.join(metrics)}: not computed, because {reason}.")
    return "\n".join(lines) + "\n"


def _csv(table: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["task", "method", "n", "diverged"]
    fields += [f"{m}_{s}" for m in METRICS for s in ("mean", "std")] + ["best"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for e in table:
        w.writerow({**e, "best": ";".join(e["best"])})
    return buf.getvalue()


def figure_size(rows: int, methods: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of the PNG figure for ``rows`` images and ``methods`` methods."""
    return LABEL_PX + CELL_PX * (2 + methods), TITLE_PX + CELL_PX * rows


def _load(path: Path):
    from PIL import Image

    if not path.is_file():
        return None
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _savefig(fig: Any, ext: str, fh: BinaryIO) -> None:
    fig.savefig(fh, dpi=DPI, format=ext)


def figure(out: Path, task: str, images: list[str], methods: list[str]) -> list[Path]:
    """Write ``out/figures/<task>.png`` and ``.pdf`` from the PNGs under ``out``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = list(images)[:FIGURE_ROWS]
    columns = ["ground truth", "measurement", *methods]
    width, height = figure_size(len(images), len(methods))
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    pad = 4
    for i, name in enumerate(images):
        paths = [out / "gt" / f"{name}.png", out / task / "measurement" / f"{name}.png"]
        paths += [out / task / m / f"{name}.png" for m in methods]
        for j, path in enumerate(paths):
            left = (LABEL_PX + j * CELL_PX + pad) / width
            bottom = (height - TITLE_PX - (i + 1) * CELL_PX + pad) / height
            ax = fig.add_axes((left, bottom, (CELL_PX - 2 * pad) / width, (CELL_PX - 2 * pad) / height))
            ax.set_xticks([])
            ax.set_yticks([])
            img = _load(path)
            if img is None:
                ax.text(
                    0.5,
                    0.5,
                    "missing or\ndiverged",
                    ha="center",
                    va="center",
                    fontsize=8,
                    transform=ax.transAxes,
                )
            else:
                ax.imshow(img, interpolation="nearest")
            if i == 0:
                ax.set_title(columns[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(task, x=0.0, y=1.0, ha="left", va="top", fontsize=9)
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for ext in ("png", "pdf"):
            path = folder / f"{task}.{ext}"
            atomic_write(path, partial(_savefig, fig, ext))
            written.append(path)
    finally:
        plt.close(fig)
    return written


def write_reports(out: Path, rows: list[dict], sources, tasks, methods, notes: dict[str, str]) -> None:
    """``summary.md``, ``summary.csv`` and one figure per task."""
    table = summarize(rows)
    atomic_write_text(out / "summary.md", markdown(table, notes))
    atomic_write_text(out / "summary.csv", _csv(table))
    for task in tasks:
        figure(out, task, [s.name for s in sources], list(methods))
