"""``psld demo``: restore the shipped held-out Fashion-MNIST images with the built-in model.

For each task, every method restores the same batch of measurements ``y`` (drawn once from ``seed``:
:func:`psld.solve` with ``simulate=True`` draws the operator and the noise from the per-image seeds
before sampling, so each method's call reproduces them; the test checks it), ``pinv`` is ``A^+ y``,
and PSNR/SSIM are measured against the clean images. Writes ``comparison.png`` (rows: task x image;
columns: measurement | each method | ground truth) and prints the table.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["DEMO_METHODS", "DEMO_TASKS", "DemoResult", "run_demo"]

DEMO_TASKS = ("sr4", "inpaint-box", "inpaint-random", "deblur-gaussian")
DEMO_METHODS = ("psld", "gml", "ldps", "pinv")


@dataclass
class DemoResult:
    """Per (task, method): per-image PSNR/SSIM lists; the measurement and restorations per task."""

    psnr: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    ssim: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    images: dict[tuple[str, str], Tensor] = field(default_factory=dict)  # [B, 3, H, W] in [0, 1]
    measurements: dict[str, Tensor] = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> str:
        """Markdown table: mean PSNR (dB) / SSIM per task and method."""
        methods = list(dict.fromkeys(m for _, m in self.psnr))
        tasks = list(dict.fromkeys(t for t, _ in self.psnr))
        lines = ["| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for t in tasks:
            cells = [f"{np.mean(self.psnr[t, m]):.2f} / {np.mean(self.ssim[t, m]):.3f}" for m in methods]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _pinv(operator, measurement01: Tensor) -> Tensor:
    with torch.no_grad():
        return ((operator.pinv(measurement01 * 2 - 1) + 1) / 2).clamp(0, 1)


def restore_set(
    model,
    images01: Tensor,
    task: str,
    methods: tuple[str, ...],
    *,
    seed: int,
    steps: int | None = None,
    sigma_y: float = 0.025,
    paste: bool = True,
) -> tuple[dict[str, Tensor], Tensor, Any]:
    """``({method: restored [B, 3, H, W] in [0, 1]}, measurement in [0, 1], operator)`` for one task:
    every method sees the ``y`` that :func:`psld.solve` draws from ``seed`` (image ``i``: ``seed + i``)."""
    from psld.presets import model_preset
    from psld.restore import solve

    outputs: dict[str, Tensor] = {}
    measurement: Tensor | None = None
    operator: Any = None
    # pinv needs only y: then one ldps step draws it exactly as every method's call does
    samplers: list[str | None] = [m for m in methods if m != "pinv"] or [None]
    for method in samplers:
        config = model_preset(model, task, method or "ldps")
        if method is None or steps is not None:
            config = config.replace(num_steps=1 if method is None else steps)
        out = solve(
            images01,
            task,
            model=model,
            simulate=True,
            seed=seed,
            sigma_y=sigma_y,
            config=config,
            output_type="pt",
            progress=False,
            paste=paste,
        )
        if measurement is not None and not torch.equal(measurement, out.measurement):
            raise RuntimeError(f"{method} saw another measurement than {samplers[0]}")  # never expected
        measurement, operator = out.measurement, out.operator
        if method is not None:
            outputs[method] = out.images
    assert measurement is not None  # every branch above ran solve
    if "pinv" in methods:
        outputs["pinv"] = _pinv(operator, measurement)
    return {m: outputs[m] for m in methods}, measurement, operator


def _figure(result: DemoResult, truth: Tensor, methods: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(result.measurements)
    n = truth.shape[0]
    cols = ["measurement", *methods, "ground truth"]
    fig, axes = plt.subplots(
        len(tasks) * n, len(cols), figsize=(1.1 * len(cols), 1.1 * len(tasks) * n), dpi=100, squeeze=False
    )
    for r in range(len(tasks) * n):
        task, i = tasks[r // n], r % n
        panels = [result.measurements[task][i], *(result.images[task, m][i] for m in methods), truth[i]]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=7)
            if c == 0 and i == 0:
                ax.set_ylabel(task, fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path)
    plt.close(fig)


def run_demo(
    out: str | os.PathLike = "psld-demo",
    *,
    n: int = 4,
    steps: int | None = None,
    seed: int = 0,
    tasks: tuple[str, ...] = DEMO_TASKS,
    methods: tuple[str, ...] = DEMO_METHODS,
    progress: bool = True,
) -> DemoResult:
    """Restore ``n`` shipped test images for ``tasks`` x ``methods`` with the built-in model."""
    from psld.evaluation.metrics import psnr_ssim
    from psld.files import check_writable_folder
    from psld.images import load_images
    from psld.models.builtin import test_images
    from psld.models.loading import load_model

    files = test_images()
    if not 1 <= n <= len(files):
        raise ValueError(f"n must be in [1, {len(files)}] (the shipped test images), got {n}")
    check_writable_folder(out)
    model = load_model("fashion-mnist", device="cpu")
    truth = load_images([str(f) for f in files[:n]])
    result = DemoResult()
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    for task in tqdm(tasks, desc="demo", unit="task", disable=not progress):
        restored, measurement, _ = restore_set(model, truth, task, methods, seed=seed, steps=steps)
        if measurement.shape[-1] != truth.shape[-1]:  # low-resolution y: shown nearest-upsampled
            # (inpainting: unobserved pixels are y = 0, shown mid-grey)
            measurement = torch.nn.functional.interpolate(measurement, size=truth.shape[-2:], mode="nearest")
        result.measurements[task] = measurement.clamp(0, 1)
        for method, x in restored.items():
            result.images[task, method] = x
            result.psnr[task, method], result.ssim[task, method] = psnr_ssim(x, truth)
    result.seconds = time.perf_counter() - t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _figure(result, truth, methods, out / "comparison.png")
    (out / "table.md").write_text(result.table())
    if not all(math.isfinite(v) for vals in result.psnr.values() for v in vals):
        raise RuntimeError("a restoration produced a non-finite PSNR")
    return result
