"""Measurement helpers: step memory, convolution throughput, FLOPs, and a power-law fit.

Memory of a step (not of the process):

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the peak, weights
  included) and its growth over the allocation before the step (the step's own memory).
* CPU: the benchmark runs the step in a fresh child process (weights built, freed heap returned to the
  OS with ``malloc_trim``), samples the resident set size from ``/proc/self/statm`` every 2 ms on a
  thread while the step runs, and reports the peak minus the RSS just before the step. The growth of
  ``ru_maxrss`` (the kernel's high-water mark) is reported next to it as a cross-check; it
  under-counts when an earlier peak (the weight build) was higher than the step's.
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import threading
import time
from collections.abc import Callable

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def trim_heap() -> None:
    """Return freed heap pages to the OS (glibc), so that the RSS before a step is what is live."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class _Poller(threading.Thread):
    def __init__(self, period: float = 0.002):
        super().__init__(daemon=True)
        self.period, self.peak, self.done = period, rss_bytes(), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.period)


def step_memory(fn: Callable[[], object], device: torch.device) -> dict[str, float]:
    """Run ``fn`` once and return the step's memory in MiB (see the module docstring)."""
    mib = 2.0**20
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_mib": peak / mib, "step_mib": (peak - before) / mib, "weights_mib": before / mib}
    trim_heap()
    before, maxrss0 = rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    poller = _Poller()
    poller.start()
    fn()
    poller.done.set()
    poller.join()
    peak = max(poller.peak, rss_bytes())
    maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "peak_mib": peak / mib,
        "step_mib": (peak - before) / mib,
        "weights_mib": before / mib,
        "maxrss_growth_mib": (maxrss1 - maxrss0) / 1024,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def conv_throughput(
    device: torch.device,
    dtype: torch.dtype,
    budget_s: float = 0.4,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Best measured GFLOP/s of a 3x3, stride-1 convolution (forward) over SD-like shapes and layouts.

    Shapes are those of SD's VAE and UNet levels (channels x side): the best of them is the machine's
    convolution roofline used for the efficiency figures. ``clock=time.process_time`` measures CPU
    seconds instead of wall seconds (robust to other jobs on a shared CPU, for one thread).
    """
    shapes = [(128, 256), (256, 128), (512, 64), (320, 32), (640, 16), (1280, 8)]
    results: dict[str, float] = {}
    for c, side in shapes:
        conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(device, dtype).requires_grad_(False)
        x = torch.randn(1, c, side, side, device=device, dtype=dtype)
        flops = 2.0 * c * c * 9 * side * side
        best = 0.0
        for fmt in (torch.contiguous_format, torch.channels_last):
            conv_f, x_f = conv.to(memory_format=fmt), x.contiguous(memory_format=fmt)
            with torch.no_grad():
                conv_f(x_f)
                sync(device)
                n, start = 0, clock()
                while clock() - start < budget_s or n < 2:
                    conv_f(x_f)
                    n += 1
                sync(device)
            best = max(best, flops * n / (clock() - start) / 1e9)
        results[f"{c}x{side}x{side}"] = best
    return results


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x (``y ~ x^k``)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)
