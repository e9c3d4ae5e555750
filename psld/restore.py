"""``psld.restore``: :func:`solve` restores images with a latent diffusion prior (images in, restored
images out).

Two modes:

* **Real use** (default): the input *is* the degraded observation. ``srN``: the low-resolution image
  (the result is N times larger); ``inpaint-*``/``destripe``: the image plus its ``mask`` (1 = observed;
  required for the inpainting tasks, optional for ``destripe`` whose default stripe pattern is then
  used); ``deblur-*``: the blurry image plus the known ``kernel`` (default for ``deblur-gaussian``: the
  task's Gaussian; ``deblur-motion`` needs a kernel); ``denoise``: the noisy image.
* **Simulation** (``simulate=True``): the input is a clean image; the task's operator is built (random
  masks and motion kernels drawn from the generator of each image), and ``y = A x + n`` with
  ``n ~ N(0, sigma_y^2)``. ``sigma_y`` is in [0, 1] image units (default 0.025, the official setting) and
  is doubled inside, where images live in [-1, 1]. In real use ``sigma_y`` is refused (the observation
  carries its own noise).

**Sizes (padding policy).** Any input size is accepted. The observation is reflect-padded at the bottom
and right so that the full-resolution image is a multiple of ``model.size_multiple`` (8 for SD: the
VAE factor; LDMs with ``UNet2DModel`` also need the UNet's multiple), the problem is solved at the
padded size, and the result is cropped back to the input's size (times the factor for ``srN``: the
low-resolution observation is padded so that its upscaled size is a valid multiple). Masks are padded
the same way as the image. A custom operator fixes the size: no padding is done.

**Randomness.** One ``torch.Generator`` per image when ``generator`` is a list (the diffusers
convention), or ``seed`` (``[Generator().manual_seed(seed + i)]``). Each image's generator is used, in
this order, for its simulated operator, its measurement noise, its initial latent and any per-step
noise, so a batch gives the same results as the images solved one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from psld import budget, validation
from psld.config import PSLDConfig
from psld.images import (
    OUTPUT_TYPES,
    lcm,
    load_images,
    load_kernel,
    load_mask,
    pad_to_multiple,
    require_observed,
    to_output,
)
from psld.models.loading import check_device
from psld.operators.base import LinearOperator
from psld.operators.inpainting import MaskOperator
from psld.sampler import sample
from psld.tasks import Task, get_task

__all__ = ["solve", "SolveOutput", "check_device"]

#: measurement noise of a simulation, in [0, 1] image units (the official setting)
DEFAULT_SIGMA_Y = 0.025


@dataclass
class SolveOutput:
    """Result of :func:`solve`.

    ``images``: the restored images (``output_type``: list of PIL, NHWC numpy or NCHW torch, in [0, 1]);
    ``measurement``: the observation ``y`` the sampler used, in [0, 1] image units (``(y + 1) / 2``;
    not clamped, noisy in simulation), ``[B, *out_shape]`` cropped like the images; ``latents``: the
    final latents; ``losses``: per-step, per-image ``"measurement"`` and ``"glue"`` losses
    (``[steps, B]``); ``operator``: the operator (at the padded size); ``config``: the sampler settings.
    """

    images: Any
    measurement: Tensor
    latents: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    operator: LinearOperator | list[LinearOperator] | None = None
    config: PSLDConfig | None = None


# ---------------------------------------------------------------------------------------------- helpers


def _generators(generator, seed, batch: int) -> list[torch.Generator] | torch.Generator:
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        return [torch.Generator().manual_seed(seed + i) for i in range(batch)]
    if generator is None:
        gens = []
        for _ in range(batch):
            g = torch.Generator()
            g.seed()
            gens.append(g)
        return gens
    if isinstance(generator, torch.Generator):
        return generator if batch > 1 else [generator]
    if isinstance(generator, (list, tuple)):
        if len(generator) != batch or not all(isinstance(g, torch.Generator) for g in generator):
            raise ValueError(f"generator must be one torch.Generator or a list of {batch} (one per image)")
        return list(generator)
    raise ValueError(f"generator must be a torch.Generator or a list of them, got {type(generator).__name__}")


def _family(model) -> str:
    """The preset/operator family: pixel-space models use the LDM (256 px) settings."""
    return "ldm" if model.family == "pixel" else model.family


def _config(
    task: Task | None, model, config, num_inference_steps, omega, gamma, method=None, sigma_y=0.0
) -> PSLDConfig:
    pixel = model.family == "pixel"
    T = model.num_train_timesteps
    if config is None:
        want = method if method is not None else ("dps" if pixel else None)
        if task is not None:
            from psld.presets import model_preset

            config = model_preset(model, task.name, want)
        else:
            config = PSLDConfig().replace(
                **model.scheduler_settings(), **({"method": "dps"} if pixel else {})
            )
            if want is not None and want != config.method:
                from psld.methods import method_config

                config = method_config(want, config)
        if config.method == "diffpir":  # DiffPIR's rho uses the noise std ([-1, 1] units; floor 1e-3)
            config = config.replace(sigma_n=max(2.0 * sigma_y, 1e-3))
    elif not isinstance(config, PSLDConfig):
        raise ValueError(f"config must be a PSLDConfig, got {type(config).__name__}")
    elif method is not None and method != config.method:
        raise ValueError(
            f"method {method!r} disagrees with config.method {config.method!r}; give one of them"
        )
    if config.method == "dps" and not pixel:
        raise ValueError("method 'dps' needs a pixel-space model (family 'pixel'); this model is latent")
    if pixel and config.method != "dps":
        raise ValueError(f"a pixel-space model runs method 'dps' only, got {config.method!r}")
    changes: dict[str, Any] = {}
    if num_inference_steps is not None:
        changes["num_steps"] = validation.steps(num_inference_steps, "num_inference_steps", maximum=T)
    if omega is not None:
        changes["omega"] = validation.finite_number(omega, "omega")
    if gamma is not None:
        changes["gamma"] = validation.finite_number(gamma, "gamma")
    config = config.replace(**changes) if changes else config
    return _fit_steps_offset(config, T)


def _fit_steps_offset(config: PSLDConfig, T: int) -> PSLDConfig:
    """Lower a "leading" schedule's ``steps_offset`` just enough that its first timestep is ``T - 1``.

    diffusers' leading timesteps are ``i * (T // S) + steps_offset``; with SD's ``steps_offset = 1`` the
    first of ``S = T`` steps would be ``T``, past the last trained timestep (diffusers itself fails
    there). Any ``S <= T`` fits once the offset is at most ``T - 1 - (S - 1) * (T // S)`` (0 at ``S = T``:
    every timestep once); step counts that already fit are unchanged.
    """
    if config.timestep_spacing != "leading":
        return config
    S = config.num_steps
    room = T - 1 - (S - 1) * (T // S)
    return config.replace(steps_offset=room) if 0 <= room < config.steps_offset else config


def _stack_ops(ops: list[LinearOperator]) -> LinearOperator | list[LinearOperator]:
    """One batched operator from per-image ones when possible (masks), else the list."""
    if len(ops) == 1:
        return ops[0]
    if all(isinstance(op, MaskOperator) and not op.batched for op in ops):
        return MaskOperator(torch.stack([op.mask for op in ops]), ops[0].in_shape)  # type: ignore[attr-defined]
    return ops


@dataclass
class _Problem:
    operator: LinearOperator | list[LinearOperator]
    y: Tensor  # [-1, 1], padded
    out_size: tuple[int, int]  # final (H, W) of the restored image
    y_size: tuple[int, int]  # final (h, w) of the returned measurement
    padded: tuple[int, int]  # (H, W) the sampler works at


def _build_task_problem(
    task: Task,
    x01: Tensor,
    *,
    model,
    mask,
    kernel,
    simulate: bool,
    sigma_y: float,
    gens,
    sr_mode: str,
    kernel_correlate: bool = False,
    protocol: str = "default",
) -> _Problem:
    from psld.noise import GaussianNoise

    b, _, h, w = x01.shape
    m = model.size_multiple
    f = task.factor
    dev = model.device
    x = (x01 * 2 - 1).to(dev)
    if mask is not None:
        mask = require_observed(load_mask(mask, (h, w)))
        if mask.dim() == 3 and mask.shape[0] not in (1, b):
            raise ValueError(f"got {mask.shape[0]} masks for {b} images")
    k = load_kernel(kernel) if kernel is not None else None
    if k is not None:
        validation.kernel_fits(k.shape, (h, w), "kernel")
    if mask is not None and task.kind != "mask":
        raise ValueError(f"task {task.name!r} takes no mask (only inpaint-random, inpaint-box, destripe)")
    if k is not None and task.kind != "blur":
        raise ValueError(f"task {task.name!r} takes no kernel (only deblur-gaussian, deblur-motion)")
    if task.kind == "mask" and task.inpainting and mask is None and not simulate and task.name != "destripe":
        raise ValueError(
            f"task {task.name!r} needs a mask (1 = observed pixel) of the image's size in real use"
        )
    if task.name == "deblur-motion" and k is None and not simulate:
        raise ValueError("task 'deblur-motion' needs the blur kernel in real use (or simulate=True)")

    if not simulate and task.kind == "sr":
        # the input is the low-resolution observation: pad it so its upscaled size is a valid multiple
        q = lcm(m, f) // f
        y = pad_to_multiple(x, q)
        hp, wp = y.shape[-2] * f, y.shape[-1] * f
        sr_op = task.build_operator((3, hp, wp), family=_family(model), sr_mode=sr_mode, side=min(h, w) * f)
        return _Problem(sr_op, y, (h * f, w * f), (h, w), (hp, wp))

    mult = lcm(m, f)
    xp = pad_to_multiple(x, mult)
    hp, wp = xp.shape[-2:]
    pmask = None
    if mask is not None:
        mm = mask if mask.dim() == 3 else mask[None]
        pmask = pad_to_multiple(mm[:, None], mult)[:, 0]
        pmask = pmask[0] if mask.dim() == 2 else pmask
    shape = (3, hp, wp)
    build: dict[str, Any] = dict(
        family=_family(model),
        mask=pmask,
        kernel=k,
        sr_mode=sr_mode,
        side=min(h, w),
        kernel_correlate=kernel_correlate,
        protocol=protocol,
    )
    # the official box is placed at random (seeded per image), so it is drawn like the random tasks
    randomised = task.random or (protocol == "official" and task.name == "inpaint-box")
    op: LinearOperator | list[LinearOperator]
    if simulate and randomised and pmask is None and k is None and isinstance(gens, list):
        op = _stack_ops([task.build_operator(shape, seed=g, **build) for g in gens])
    else:
        seed = gens if isinstance(gens, torch.Generator) else gens[0]
        op = (
            task.build_operator(shape, seed=seed, **build)
            if (simulate and randomised)
            else task.build_operator(shape, seed=0, **build)
        )
    if simulate:
        if isinstance(op, list):
            y = torch.cat([o.forward(xp[i : i + 1]) for i, o in enumerate(op)])
        else:
            y = op.forward(xp)
        y = GaussianNoise(2.0 * sigma_y)(y, gens)
        ys = (-(-h // f), -(-w // f))
    else:
        assert not isinstance(op, list)  # per-image operators are drawn only when simulating
        y = op.forward(xp) if task.kind == "mask" else xp
        ys = (h, w)
    return _Problem(op, y, (h, w), ys, (hp, wp))


def _build_operator_problem(op: LinearOperator, x01: Tensor, *, model, simulate, sigma_y, gens) -> _Problem:
    from psld.noise import GaussianNoise

    if len(op.in_shape) != 3 or op.in_shape[0] != 3:
        raise ValueError(f"operator.in_shape must be an RGB image shape (3, H, W), got {op.in_shape}")
    _, hp, wp = op.in_shape
    m = model.size_multiple
    if hp % m or wp % m:
        raise ValueError(f"operator image size {hp}x{wp} must be a multiple of {m} for this model")
    x = (x01 * 2 - 1).to(model.device)
    if simulate:
        if tuple(x.shape[1:]) != op.in_shape:
            raise ValueError(
                f"image shape {list(x.shape[1:])} does not match operator.in_shape {list(op.in_shape)}"
            )
        y = GaussianNoise(2.0 * sigma_y)(op.forward(x), gens)
    else:
        if tuple(x.shape[1:]) != op.out_shape:
            raise ValueError(
                f"measurement shape {list(x.shape[1:])} does not match "
                f"operator.out_shape {list(op.out_shape)}"
            )
        y = x
    ys = (int(op.out_shape[1]), int(op.out_shape[2])) if len(op.out_shape) == 3 else (0, 0)
    return _Problem(op, y, (hp, wp), ys, (hp, wp))


def _check_budget(model, padded, batch: int, cfg: PSLDConfig, allow_large: bool, on_estimate) -> None:
    """Refuse a run larger than :data:`psld.budget.LARGE_PIXELS` whose estimated memory exceeds the
    device's free memory, unless ``allow_large`` (:mod:`psld.budget`); ``on_estimate`` sees the estimate of
    a run that goes ahead."""
    if padded[0] * padded[1] * batch <= budget.LARGE_PIXELS:
        return
    estimate = budget.estimate_run(model, padded, batch, cfg.num_steps, cfg.uses_glue)
    if not estimate.fits and not allow_large:
        raise ValueError(
            f"{estimate.describe()}: more memory than the device has free; use a smaller image or "
            "low_memory, or pass allow_large=True (psld restore --allow-large) to run anyway"
        )
    if on_estimate is not None:
        on_estimate(estimate)


def _crop(t: Tensor, size: tuple[int, int]) -> Tensor:
    return t[..., : size[0], : size[1]]


# ---------------------------------------------------------------------------------------------- solve
def solve(
    image_or_measurement: Any,
    task_or_operator: str | Task | LinearOperator,
    *,
    model: Any,
    mask: Any = None,
    kernel: Any = None,
    kernel_correlate: bool = False,
    simulate: bool = False,
    prompt: str = "",
    num_inference_steps: int | None = None,
    omega: float | None = None,
    gamma: float | None = None,
    sigma_y: float | None = None,
    sr_mode: str = "bicubic",
    generator: torch.Generator | list[torch.Generator] | None = None,
    seed: int | None = None,
    output_type: str = "pil",
    callback_on_step_end: Callable[[int, int, dict], dict | None] | None = None,
    paste: bool = True,
    progress: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    config: PSLDConfig | None = None,
    allow_large: bool = False,
    on_estimate: Callable[[budget.RunEstimate], object] | None = None,
    method: str | None = None,
) -> SolveOutput:
    """Restore ``image_or_measurement`` for ``task_or_operator`` with the latent diffusion ``model``.

    ``task_or_operator``: a task name (:func:`psld.list_tasks`) or a :class:`~psld.operators.LinearOperator`
    on ``(3, H, W)`` images (then the input is ``y`` with ``out_shape``, or the clean image when
    simulating). ``model``: a :class:`~psld.models.LatentModel`, or a folder / hub id / diffusers
    pipeline loaded with :func:`psld.load_model` (``device``/``dtype`` apply only then). Images: see
    :mod:`psld.images`;
    a list is a batch. ``num_inference_steps``/``omega``/``gamma`` default to the task preset for the
    model family (:meth:`PSLDConfig.preset`), with the scheduler's offsets from the model; an explicit
    ``config`` is used as given (these three still override it). ``method`` picks a solver of
    :data:`psld.methods.ALL_METHODS` with its own defaults (docs/methods.md) instead of the preset's
    PSLD. ``prompt`` conditions SD models.
    ``paste`` (inpainting-like tasks and mask operators): the observed pixels of the *measurement* ``y``
    replace the result's (never ground truth). ``callback_on_step_end(i, t, kwargs)`` runs after each
    step with ``kwargs["latents"]`` (also ``"z0"``, ``"x0"``); returning a dict with ``"latents"``
    replaces them. ``output_type``: ``"pil"``, ``"np"`` (NHWC float in [0, 1]) or ``"pt"`` (NCHW).
    ``kernel`` is applied as a true convolution; ``kernel_correlate=True`` applies it as a correlation,
    the official code's ``conv2d`` convention (use it for a kernel array from the official code).
    (The official code pastes the clean ground truth, which makes its inpainting PSNR optimistic.)

    ``num_inference_steps`` may be up to the model's training timesteps (1000 for SD and the LDMs): a
    "leading" schedule's ``steps_offset`` is lowered where it would push the first timestep past them.
    A run above :data:`psld.budget.LARGE_PIXELS` pixels is first estimated (:mod:`psld.budget`;
    ``on_estimate(estimate)`` sees it) and refused when it needs more memory than the device has free,
    unless ``allow_large=True``.

    See the module docstring for the real-use/simulation modes, the padding policy and randomness.
    Bad input raises a one-line ``ValueError`` (a mask observing no pixel, a missing device, ...);
    a diverged run raises :class:`psld.DivergenceError` (one line: first bad step and the weights).
    """
    from psld.models.loading import LatentModel, load_model

    if output_type not in OUTPUT_TYPES:
        raise ValueError(
            f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}"
        )
    if isinstance(task_or_operator, LinearOperator):
        task, operator = None, task_or_operator
    elif isinstance(task_or_operator, (str, Task)):
        task, operator = get_task(task_or_operator), None
    else:
        raise ValueError(
            f"task_or_operator must be a task name or a LinearOperator, got {type(task_or_operator).__name__}"
        )
    if operator is not None and (mask is not None or kernel is not None):
        raise ValueError("mask and kernel apply to named tasks; build them into the operator instead")
    if sigma_y is not None and not simulate:
        raise ValueError("sigma_y applies only with simulate=True (a real observation carries its own noise)")
    sigma_y = validation.finite_number(DEFAULT_SIGMA_Y if sigma_y is None else sigma_y, "sigma_y")
    validation.sr_mode(sr_mode)
    x01 = load_images(
        image_or_measurement,
        "image" if (simulate or task is None or task.kind != "sr") else "low-resolution image",
    )
    if not isinstance(model, LatentModel):
        model = load_model(model, device=check_device(device), dtype=dtype)
    if prompt:
        model = model.with_prompt(prompt)
    batch = x01.shape[0]
    gens = _generators(generator, seed, batch)
    cfg = _config(task, model, config, num_inference_steps, omega, gamma, method, sigma_y)

    if task is not None:
        prob = _build_task_problem(
            task,
            x01,
            model=model,
            mask=mask,
            kernel=kernel,
            simulate=simulate,
            sigma_y=sigma_y,
            gens=gens,
            sr_mode=sr_mode,
            kernel_correlate=kernel_correlate,
            # the box placement is its own setting (PSLDConfig.official sets "official"), never the spacing
            protocol="official" if cfg.box_placement == "official" else "default",
        )
        pasteable = task.inpainting
    else:
        assert operator is not None
        prob = _build_operator_problem(
            operator, x01, model=model, simulate=simulate, sigma_y=sigma_y, gens=gens
        )
        pasteable = isinstance(operator, MaskOperator)

    callback = None
    if callback_on_step_end is not None:

        def callback(i: int, t: int, state: dict) -> dict | None:
            out = callback_on_step_end(i, t, dict(state))
            return out if isinstance(out, dict) else None

    _check_budget(model, prob.padded, batch, cfg, allow_large, on_estimate)
    latent_shape = model.latent_shape(*prob.padded)
    common = dict(config=cfg, latent_shape=latent_shape, callback=callback, progress=progress)
    ops = prob.operator
    if isinstance(ops, list):  # per-image operators that cannot be batched (random motion kernels)
        assert isinstance(gens, list)  # drawn per image, one generator each
        outs = [
            sample(
                model.prior,
                model.encoder,
                model.decoder,
                op,
                prob.y[i : i + 1],
                generator=[gens[i]],
                **common,
            )
            for i, op in enumerate(ops)
        ]
        x = torch.cat([o.x for o in outs])
        z = torch.cat([o.z for o in outs])
        losses = {k: torch.cat([o.losses[k] for o in outs], dim=1) for k in outs[0].losses}
    else:
        out = sample(model.prior, model.encoder, model.decoder, ops, prob.y, generator=gens, **common)
        x, z, losses = out.x, out.z, out.losses
        if paste and pasteable:
            with torch.no_grad():
                x = ops.glue(x, prob.y, "adjoint")  # M y + (1 - M) x: observed pixels from the measurement

    images = _crop((x.float() + 1) / 2, prob.out_size)
    measurement = (prob.y.float() + 1) / 2
    if measurement.dim() == 4 and prob.y_size != (0, 0):
        measurement = _crop(measurement, prob.y_size)
    return SolveOutput(
        images=to_output(images, output_type),
        measurement=measurement.detach().cpu(),
        latents=z.detach(),
        losses={k: v.detach().cpu() for k, v in losses.items()},
        operator=ops,
        config=cfg,
    )
