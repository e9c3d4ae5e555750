"""The loop of :func:`psld.evaluate`: one ``(image, task)`` unit at a time, one row per method.

For each unit the ground truth is loaded, the operator and measurement simulated once
(:func:`psld.evaluation.methods.simulate`), and each method run on that same ``y``; its row holds the
metrics against the ground truth and ``y`` (:mod:`psld.evaluation.metrics`), the seconds it took, the
seed, the resolved sampler configuration, the model, the psld version and the fingerprint. With an
output folder the ground truth, the measurement and each result are written (all or nothing,
:func:`psld.files.atomic_write`) before the row is appended, so a row never points at a missing file.
A :class:`psld.DivergenceError` is a row with ``diverged`` (the message) and no metrics.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psld.evaluation.checks import Checked
from psld.evaluation.datasets import ImageSource, load_image
from psld.evaluation.methods import model_role, run_method, simulate
from psld.evaluation.store import Appender

__all__ = ["fingerprint", "save_png", "scores", "run_unit", "run_units"]


def fingerprint(c: Checked, task: str, method: str) -> str:
    """16 hex digits of SHA-256 over the shared settings and the entry's model and sampler config."""
    data = {"settings": asdict(c.settings), "entry": c.entries[f"{task}/{method}"]}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def save_png(image01: torch.Tensor, path: Path) -> None:
    """``[3, H, W]`` in [0, 1] as a PNG at ``path``, all or nothing."""
    from psld.files import atomic_write
    from psld.images import to_pil

    pil = to_pil(image01[None])[0]
    atomic_write(path, lambda fh: pil.save(fh, format="PNG"))


def scores(op: Any, result01: torch.Tensor, y: torch.Tensor, truth01: np.ndarray) -> dict:
    """PSNR and SSIM against the ``[H, W, 3]`` truth, residual against ``y``, of a ``[1, 3, H, W]`` result."""
    from psld.evaluation.metrics import psnr, residual, ssim

    res_np = result01[0].permute(1, 2, 0).double().numpy()
    return {
        "psnr": psnr(res_np, truth01),
        "ssim": ssim(res_np, truth01),
        "residual": residual(op, result01, y),
    }


def run_unit(
    c: Checked,
    source: ImageSource,
    task: str,
    methods: list[str],
    models: dict[str, Any],
    *,
    out: Path | None,
    appender: Appender | None,
    rank: int,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """The rows of ``methods`` on one ``(image, task)``, all on the one simulated measurement."""
    from psld.sampler import DivergenceError

    s = c.settings
    gt = load_image(source, s.size, s.resize)
    x01 = torch.from_numpy(gt).permute(2, 0, 1)[None].to(torch.float32) / 255.0
    op, y, seed = simulate(
        task, x01, seed=s.seed, image=source.name, sigma_y=s.sigma_y, sr_mode=s.sr_mode, size=s.size,
        family=c.family,
    )  # fmt: skip
    if out is not None:
        save_png(x01[0], out / "gt" / f"{source.name}.png")
        if y.dim() == 4:
            save_png(((y + 1) / 2).clamp(0, 1)[0], out / task / "measurement" / f"{source.name}.png")
    truth = gt.astype(np.float64) / 255.0
    rows = []
    for method in methods:
        config = c.config_of(task, method)
        role = model_role(method)
        t0 = time.perf_counter()
        result: torch.Tensor | None
        info: dict[str, Any]
        metrics: dict[str, Any]
        try:
            result, info = run_method(
                method, op, x01, y, seed, models.get(role) if role else None, config, s.sigma_y
            )
            metrics = scores(op, result, y, truth)
        except DivergenceError as exc:  # one diverged run is a result (a row), not the end of the set
            result, info = None, {}
            metrics = {"psnr": None, "ssim": None, "residual": None, "diverged": " ".join(str(exc).split())}
        entry = c.entries[f"{task}/{method}"]
        row = {
            "image": source.name,
            "task": task,
            "method": method,
            **metrics,
            "seconds": time.perf_counter() - t0,
            "seed": seed,
            **info,
            "config": fingerprint(c, task, method),
            "sampler": entry["sampler"],
            "model": entry["model"],
            "version": s.version,
            "rank": rank,
            "finished": time.time(),
        }
        if out is not None and appender is not None:
            if result is not None:
                save_png(result[0], out / task / method / f"{source.name}.png")
            appender.append(row)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def run_units(
    c: Checked,
    todo: list[tuple[str, str, list[str]]],
    models: dict[str, Any],
    *,
    out: Path | None,
    appender: Appender | None,
    rank: int,
    on_row: Callable[[dict], None] | None = None,
) -> list[dict]:
    """:func:`run_unit` over ``(image, task, methods)`` in order; the rows computed."""
    by_name = {s.name: s for s in c.sources}
    rows: list[dict] = []
    for image, task, methods in todo:
        rows += run_unit(
            c, by_name[image], task, methods, models, out=out, appender=appender, rank=rank, on_row=on_row
        )
    return rows
