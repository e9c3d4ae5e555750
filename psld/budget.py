"""Memory and time of a run, estimated before it starts (``psld.solve``, ``psld restore``).

A guided step's memory is dominated by the activations autograd keeps for the backward pass (UNet,
decoder and, with a glue term, encoder), and both they and the step's time grow linearly with the
pixels (README: time ∝ pixels^1.01, memory ∝ pixels^0.98). So the model is *probed* once, by one
forward and backward pass at two small sizes ``s1 < s2``, counting the bytes of every tensor saved for
backward (``torch.autograd.graph.saved_tensors_hooks``) and timing it; a line through the two points
gives bytes and seconds per pixel, cached on the model per (device, dtype, glue). The time is a rough
guide (small probes run below the large sizes' efficiency, and a busy machine shifts it). For a run of ``S``
steps on ``B`` images of ``P`` pixels (at the padded size)::

    memory  = MEMORY_MARGIN * (a_mem + b_mem * P) * B
    seconds = S * (a_time + b_time * P) * B

The free memory is ``torch.cuda.mem_get_info`` on CUDA and ``MemAvailable`` of ``/proc/meminfo`` on
the CPU (unknown elsewhere: nothing is refused). Runs up to :data:`LARGE_PIXELS` pixels per batch are
not probed: the documented sizes (512² and below) need no estimate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["RunEstimate", "estimate_run", "free_memory", "LARGE_PIXELS", "MEMORY_MARGIN"]

#: pixels x batch above which a run is estimated before it starts (larger than SD's 512 x 512)
LARGE_PIXELS = 768 * 768
#: peak over the saved activations: workspace of the convolutions and the gradient buffers (the tiny test
#: model: 594 saved bytes per pixel at 512², peak RSS growth 0.97 GiB at 1024² against 0.9 estimated)
MEMORY_MARGIN = 1.5
#: probe sides in units of the model's size multiple (SD: 64² and 128² pixels)
PROBE_SIDES = (8, 16)


@dataclass(frozen=True)
class RunEstimate:
    """The estimate of one run; ``available`` is the free memory of the device (``None``: unknown)."""

    bytes: float
    seconds: float
    available: int | None
    size: tuple[int, int]
    batch: int
    steps: int
    device: str

    @property
    def fits(self) -> bool:
        return self.available is None or self.bytes <= self.available

    def describe(self) -> str:
        free = "unknown" if self.available is None else f"{self.available / 2**30:.1f} GiB"
        return (
            f"estimated {self.bytes / 2**30:.1f} GiB and {_duration(self.seconds)} for {self.steps} steps on "
            f"{self.batch} image(s) of {self.size[0]}x{self.size[1]} px on {self.device} (free: {free})"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device``: CUDA's ``mem_get_info``, Linux's ``MemAvailable``, else ``None``."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def _probe(model: Any, side: int, glue: bool) -> tuple[int, float]:
    """(bytes saved for backward, seconds) of one guided forward + backward pass at ``side x side``."""
    from psld.schedule import predict_z0

    shape = (1, *model.latent_shape(side, side))
    z = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(model.device, model.dtype)
    z.requires_grad_(True)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    alphas = model.prior.alphas_cumprod
    t_mid = len(alphas) // 2

    def sync() -> None:
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)

    sync()
    start = time.perf_counter()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        eps = model.prior.eps(z, t_mid)
        z0 = predict_z0(z, eps, float(alphas[t_mid]))
        x = model.decoder(z0)
        loss = x.float().square().sum()
        if glue:
            loss = loss + model.encoder(x).float().square().sum()
    torch.autograd.grad(loss, z)
    sync()
    return sum(seen.values()), time.perf_counter() - start


def _per_pixel(model: Any, glue: bool) -> tuple[float, float, float, float]:
    """``(a_mem, b_mem, a_time, b_time)``: the two-point line of :func:`_probe`, cached on the model."""
    key = (str(model.device), str(model.dtype), glue)
    cache = model.__dict__.setdefault("_psld_cost", {})
    if key not in cache:
        m = model.size_multiple
        s1, s2 = PROBE_SIDES[0] * m, PROBE_SIDES[1] * m
        _probe(model, s1, glue)  # warm-up: first-call allocations and kernel selection
        (m1, t1), (m2, t2) = _probe(model, s1, glue), _probe(model, s2, glue)
        p1, p2 = s1 * s1, s2 * s2
        b_mem = max(m2 - m1, 0) / (p2 - p1)
        b_time = max(t2 - t1, 0.0) / (p2 - p1)
        cache[key] = (max(m1 - b_mem * p1, 0.0), b_mem, max(t1 - b_time * p1, 0.0), b_time)
    return cache[key]


def estimate_run(model: Any, size: tuple[int, int], batch: int, steps: int, glue: bool) -> RunEstimate:
    """Memory and time of ``steps`` guided steps on ``batch`` images of ``size = (H, W)`` (padded)."""
    a_mem, b_mem, a_time, b_time = _per_pixel(model, glue)
    pixels = size[0] * size[1]
    return RunEstimate(
        bytes=MEMORY_MARGIN * (a_mem + b_mem * pixels) * batch,
        seconds=steps * (a_time + b_time * pixels) * batch,
        available=free_memory(model.device),
        size=(int(size[0]), int(size[1])),
        batch=batch,
        steps=steps,
        device=str(model.device),
    )
