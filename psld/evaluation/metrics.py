"""Per-image metrics of :func:`psld.evaluate`.

* ``psnr``, ``ssim``: scikit-image, ``data_range=1``, on the [0, 1] result against the [0, 1] ground truth
  (SSIM over RGB with ``channel_axis``, default 7x7 window).
* ``residual``: ``||y - A x_hat|| / ||y||``, in the core's [-1, 1] units (``x = 2 x01 - 1``), with the
  noisy measurement ``y`` the methods saw: how well the result explains the data.

LPIPS and FID/KID need pretrained backbones (AlexNet/VGG, Inception). This version does not compute
them: the columns are absent and :func:`unavailable_metrics` gives the one-line reason the summary
prints. A random backbone is never used.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from psld.operators.base import LinearOperator

__all__ = ["psnr", "ssim", "psnr_ssim", "residual", "t_ci95", "unavailable_metrics"]


def t_ci95(values: list[float]) -> float:
    """Half-width ``t_{0.975, n-1} s / sqrt(n)`` of the 95% Student-t interval of the mean (0 for n < 2)."""
    import math
    import statistics

    from scipy.stats import t

    n = len(values)
    if n < 2:
        return 0.0
    return float(t.ppf(0.975, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def psnr(result01: np.ndarray, truth01: np.ndarray) -> float:
    """``10 log10(1 / MSE)`` (dB) of ``[H, W, 3]`` float arrays in [0, 1]."""
    from skimage.metrics import peak_signal_noise_ratio

    return float(
        peak_signal_noise_ratio(truth01.astype(np.float64), result01.astype(np.float64), data_range=1.0)
    )


def ssim(result01: np.ndarray, truth01: np.ndarray) -> float:
    """Structural similarity of ``[H, W, 3]`` float arrays in [0, 1] (scikit-image, RGB)."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            truth01.astype(np.float64), result01.astype(np.float64), data_range=1.0, channel_axis=-1
        )
    )


def psnr_ssim(result01: torch.Tensor, truth01: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-image :func:`psnr` and :func:`ssim` of two ``[B, 3, H, W]`` batches in [0, 1]."""
    pairs = [
        (a.detach().cpu().permute(1, 2, 0).numpy(), b.detach().cpu().permute(1, 2, 0).numpy())
        for a, b in zip(result01, truth01, strict=True)
    ]
    return [psnr(a, b) for a, b in pairs], [ssim(a, b) for a, b in pairs]


def residual(operator: LinearOperator, result01: torch.Tensor, y: torch.Tensor) -> float:
    """``||y - A x_hat|| / ||y||`` with ``x_hat = 2 result01 - 1`` (``[1, 3, H, W]``) and ``y`` in [-1, 1]."""
    x = result01.to(y.device, y.dtype) * 2 - 1
    with torch.no_grad():
        r = torch.linalg.vector_norm(y - operator.forward(x)) / torch.linalg.vector_norm(y).clamp_min(1e-12)
    return float(r)


def unavailable_metrics() -> dict[str, str]:
    """``{metric: reason}`` for LPIPS, FID and KID, which are not computed in this version."""
    reasons = {}
    if importlib.util.find_spec("lpips") is None:
        reasons["LPIPS"] = "the lpips package is not installed and needs torchvision backbone weights"
    else:
        reasons["LPIPS"] = "psld does not load LPIPS backbones yet, and never uses a random one"
    if importlib.util.find_spec("torchmetrics") is None:
        why = "torchmetrics is not installed and FID/KID need its Inception weights"
    else:
        why = "psld does not load Inception weights yet, and never uses a random backbone"
    reasons["FID"] = reasons["KID"] = why
    return reasons
