"""The task registry: named inverse problems with their operators and default presets.

=================  ======================================================================================
task               operator built for an image of shape ``(C, H, W)`` (``side = min(H, W)``)
=================  ======================================================================================
inpaint-random     :class:`~psld.operators.RandomInpainting`: per image, ``p ~ U(0.3, 0.7)`` of the pixels
                   dropped (official protocol); or the given mask
inpaint-box        :class:`~psld.operators.BoxInpainting`: a centred ``side/2`` square missing (the official
                   size: 256 on 512, 128 on 256; the paper's centred placement; ``protocol="official"``:
                   the official code's random placement, 16 px margin, drawn from the seed); or the
                   given mask
destripe           :class:`~psld.operators.Destriping`: 2 of every 8 rows lost (sensor-line pattern, not
                   scaled with the image); or the given mask
denoise            :class:`~psld.operators.Denoising` (identity)
deblur-gaussian    :class:`~psld.operators.GaussianBlur` with the official kernel construction, scaled (see
                   below); or :class:`~psld.operators.Blur` with the given kernel
deblur-motion      :class:`~psld.operators.MotionBlur`: the official generator's distribution (random walk,
                   intensity 0.5), size scaled as below, applied by correlation; or the given kernel
sr2 / sr4 / sr8    :class:`~psld.operators.SuperResolution` by 2 / 4 / 8, ``sr_mode`` "bicubic" (official,
                   antialiased) or "average" (average pooling)
=================  ======================================================================================

**Blur kernels scaled to the image.** The official settings are sigma 3 with a 121-tap kernel for SD
at 512 px and sigma 3 with 61 taps for the LDM at 256 px. For an image whose shorter side is ``side``
the blur keeps the same size *relative to the image*: ``sigma = 3 * side / ref`` and
``kernel_size = odd(round(K * side / ref))`` with ``(K, ref) = (121, 512)`` for SD and ``(61, 256)``
for LDMs; the kernel is at least 3 taps and never wider than the image allows (reflect boundary).
The Gaussian kernel is built as the official code builds it, ``scipy.ndimage.gaussian_filter`` of a
delta on the ``kernel_size`` grid (truncated at 4 sigma), so at the model's native resolution (121 taps
at 512 px, 61 at 256 px, sigma 3) it is the official kernel to round-off and the operator is the
official one (reflect padding; convolution equals the official correlation for this symmetric kernel).
At other sizes it is the official construction at the scaled size and sigma (which the official code
never runs). A given ``kernel`` is applied as a true convolution, or as a correlation (the official
``conv2d`` convention) with ``kernel_correlate=True``.

Masks (``inpaint-*``): the final paste of :func:`psld.solve` uses the observed pixels of the
measurement ``y``; the official code pastes the clean ground truth instead, so its reported inpainting
PSNR is optimistic (the observed pixels carry no noise there).

Inpainting-like tasks (masks: ``inpaint-random``, ``inpaint-box``, ``destripe``) allow the final paste
of observed pixels (:func:`psld.solve`, ``paste=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from psld.config import PSLDConfig
from psld.operators.base import LinearOperator

__all__ = ["Task", "TASKS", "get_task", "list_tasks", "blur_kernel_size"]

#: (reference kernel size, reference image side) of the official blur, per model family.
OFFICIAL_BLUR = {"sd": (121, 512), "ldm": (61, 256)}
OFFICIAL_BLUR_SIGMA = 3.0
MOTION_INTENSITY = 0.5
#: operator protocols of :meth:`Task.build_operator`
PROTOCOLS = ("default", "official")
#: margin of the official random box placement (pixels)
OFFICIAL_BOX_MARGIN = 16


def _odd(n: float) -> int:
    k = max(1, int(round(n)))
    return k if k % 2 == 1 else k + 1


def blur_kernel_size(side: int, family: str = "sd") -> tuple[int, float]:
    """``(kernel_size, sigma)`` of the official blur scaled to an image whose shorter side is ``side``."""
    if family not in OFFICIAL_BLUR:
        raise ValueError(f"family must be one of {', '.join(OFFICIAL_BLUR)}, got {family!r}")
    k_ref, side_ref = OFFICIAL_BLUR[family]
    scale = side / side_ref
    sigma = OFFICIAL_BLUR_SIGMA * scale
    size = max(3, _odd(k_ref * scale))
    size = min(size, 2 * max(int(side), 2) - 1)
    return size, sigma


def _as_mask(mask, shape: tuple[int, int, int]) -> Tensor:
    """A binary mask ``[H, W]`` or ``[N, H, W]`` (1 = observed) checked against the image size."""
    m = torch.as_tensor(mask)
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() not in (2, 3) or tuple(m.shape[-2:]) != tuple(shape[1:]):
        raise ValueError(
            f"mask has size {list(m.shape[-2:]) if m.dim() >= 2 else list(m.shape)} but the image is "
            f"{shape[1]}x{shape[2]} (H x W); the mask must have the image's size"
        )
    return (m.to(torch.float32) > 0.5).to(torch.float32)


@dataclass(frozen=True)
class Task:
    """A named inverse problem.

    ``kind`` is ``"mask"``, ``"blur"``, ``"sr"`` or ``"denoise"``; ``factor`` is the SR factor (1
    otherwise); ``inpainting`` says whether pasting the observed pixels is meaningful; ``random`` whether
    the simulated operator is drawn at random (per image, from its generator).
    """

    name: str
    description: str
    kind: str
    factor: int = 1
    inpainting: bool = False
    random: bool = False
    _builder: Callable | None = None

    def preset(self, model: str = "sd", **changes) -> PSLDConfig:
        """The default configuration: :meth:`PSLDConfig.preset` for this task and model family."""
        return PSLDConfig.preset(self.name, model, **changes)

    def build_operator(
        self,
        in_shape: tuple[int, int, int],
        *,
        family: str = "sd",
        mask=None,
        kernel=None,
        sr_mode: str = "bicubic",
        seed: int | torch.Generator | None = 0,
        side: int | None = None,
        kernel_correlate: bool = False,
        protocol: str = "default",
    ) -> LinearOperator:
        """The operator for images of shape ``in_shape = (C, H, W)`` (the full-resolution shape).

        ``mask`` (mask tasks; ``[H, W]`` or ``[N, H, W]``, 1 = observed) or ``kernel`` (blur tasks; a 2-D
        odd-sized array) replace the task's default; ``seed`` draws the random ones; ``side`` is the image
        side used to scale blur kernels and boxes (default ``min(H, W)``; pass the unpadded size).
        ``kernel_correlate`` applies a given ``kernel`` as a correlation (the official convention) instead
        of a true convolution. ``protocol="official"`` builds the official code's operator where it
        differs from the default (today: the random box placement of ``inpaint-box``).
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {protocol!r}")
        if not isinstance(kernel_correlate, bool):
            raise ValueError(f"kernel_correlate must be True or False, got {kernel_correlate!r}")
        shape = tuple(int(s) for s in in_shape)
        if len(shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W), got {in_shape!r}")
        if mask is not None and self.kind != "mask":
            raise ValueError(f"task {self.name!r} takes no mask (only inpaint-random, inpaint-box, destripe)")
        if kernel is not None and self.kind != "blur":
            raise ValueError(f"task {self.name!r} takes no kernel (only deblur-gaussian, deblur-motion)")
        side = min(shape[1:]) if side is None else int(side)
        assert self._builder is not None, f"task {self.name!r} has no operator builder"
        return self._builder(
            self,
            shape,
            family=family,
            mask=mask,
            kernel=kernel,
            sr_mode=sr_mode,
            seed=seed,
            side=side,
            correlate=kernel_correlate,
            protocol=protocol,
        )


# ------------------------------------------------------------------------------------------- builders
def _mask_builder(default: Callable):
    def build(task: Task, shape, *, mask, seed, side, family, protocol, **_):
        from psld.operators import MaskOperator

        if mask is not None:
            return MaskOperator(_as_mask(mask, shape), shape)
        return default(shape, seed=seed, side=side, protocol=protocol)

    return build


def _random_mask(shape, *, seed, side, protocol):
    from psld.operators import RandomInpainting

    return RandomInpainting(shape, drop_range=(0.3, 0.7), protocol="per-image", seed=seed)


def _box_mask(shape, *, seed, side, protocol):
    from psld.operators import BoxInpainting

    box = max(1, min(side, *shape[1:]) // 2)
    if protocol == "official":
        return BoxInpainting(shape, box=box, placement="official", margin=OFFICIAL_BOX_MARGIN, seed=seed)
    return BoxInpainting(shape, box=box, placement="centre", seed=seed)


def _stripes(shape, *, seed, side, protocol):
    from psld.operators import Destriping

    return Destriping(shape, orientation="horizontal", period=8, width=2, phase=0)


def _denoise(task, shape, **_):
    from psld.operators import Denoising

    return Denoising(shape)


def _blur_builder(motion: bool):
    def build(task: Task, shape, *, kernel, seed, side, family, correlate, **_):
        from psld.operators import Blur, GaussianBlur, MotionBlur

        if kernel is not None:
            k = torch.as_tensor(kernel, dtype=torch.float64)
            if k.dim() != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
                raise ValueError(f"kernel must be a 2-D array with odd sizes, got shape {list(k.shape)}")
            if not bool(torch.isfinite(k).all()) or float(k.sum()) <= 0:
                raise ValueError("kernel must be finite with a positive sum")
            return Blur(shape, k / k.sum(), correlate=correlate)
        size, sigma = blur_kernel_size(side, family)
        if motion:
            return MotionBlur(shape, size, MOTION_INTENSITY, seed=seed)
        return GaussianBlur(shape, size, sigma, official=True)

    return build


def _sr(task: Task, shape, *, sr_mode, **_):
    from psld.operators import SuperResolution

    if sr_mode not in ("bicubic", "average"):
        raise ValueError(f"sr_mode must be 'bicubic' or 'average', got {sr_mode!r}")
    return SuperResolution(shape, task.factor, mode=sr_mode)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "inpaint-random",
            "fill randomly missing pixels (30-70% dropped per image)",
            "mask",
            inpainting=True,
            random=True,
            _builder=_mask_builder(_random_mask),
        ),
        Task(
            "inpaint-box",
            "fill a missing centred box (half the image side)",
            "mask",
            inpainting=True,
            _builder=_mask_builder(_box_mask),
        ),
        Task(
            "destripe",
            "restore lost rows (2 of every 8 missing)",
            "mask",
            inpainting=True,
            _builder=_mask_builder(_stripes),
        ),
        Task("denoise", "remove additive Gaussian noise", "denoise", _builder=_denoise),
        Task(
            "deblur-gaussian",
            "remove a Gaussian blur (official kernel scaled to the image)",
            "blur",
            _builder=_blur_builder(False),
        ),
        Task(
            "deblur-motion",
            "remove a motion blur (known kernel; random kernel when simulated)",
            "blur",
            random=True,
            _builder=_blur_builder(True),
        ),
        Task("sr2", "super-resolution x2", "sr", factor=2, _builder=_sr),
        Task("sr4", "super-resolution x4", "sr", factor=4, _builder=_sr),
        Task("sr8", "super-resolution x8", "sr", factor=8, _builder=_sr),
    )
}


def list_tasks() -> list[str]:
    """Names of the registered tasks."""
    return list(TASKS)


def get_task(name: str | Task) -> Task:
    """The task called ``name``; ``ValueError`` listing the known tasks otherwise."""
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]
