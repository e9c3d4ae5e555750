"""``psld.train``: a latent diffusion prior (diffusers ``UNet2DModel`` + ``DDPMScheduler``) on a frozen
autoencoder's latents.

For each step ``k`` the batch is drawn from a generator seeded by ``(seed, k)`` alone::

    idx ~ U{0..N-1}^B,  t ~ U{0..999}^B,  eps ~ N(0, I)
    z0  = s * E(x_idx)                      (cached; s = 1 / std of the cached latents)
    z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps
    L   = mean ||eps_theta(z_t, t) - eps||^2

so a resumed run draws exactly what an uninterrupted one would, and ``accelerate launch`` with P
processes (each taking rows ``rank::P`` of the same batch, gradients averaged) computes the same update
as one process up to the order of the floating-point sums. AdamW with linear warm-up and cosine decay
(a function of ``k``, no scheduler state), gradient norm clipped at 1, EMA of the weights.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from psld.training.config import TrainConfig

__all__ = ["TrainResult", "build_unet", "learning_rate", "scheduler_config", "train"]

_CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainResult:
    """What :func:`train` did: output folder, steps, final EMA loss, loss curve, seconds, throughput."""

    out: Path
    steps: int
    final_loss: float
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    scaling_factor: float = 1.0
    resumed_from: int = 0


def scheduler_config() -> dict[str, Any]:
    """Stable Diffusion's DDPM schedule: scaled_linear betas, epsilon prediction, steps_offset 1."""
    return dict(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="epsilon",
        clip_sample=False,
        steps_offset=1,
    )


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def build_unet(config: TrainConfig, latent_channels: int, latent_size: int) -> Any:
    """A ``UNet2DModel`` with self-attention at the coarsest level only."""
    from diffusers import UNet2DModel

    levels = len(config.block_out_channels)
    down = ("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",)
    up = ("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1)
    return UNet2DModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        attention_head_dim=min(32, config.block_out_channels[-1]),
        norm_num_groups=8,
    )


def _step_generator(seed: int, step: int) -> torch.Generator:
    digest = hashlib.sha256(f"psld-train:{seed}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def draw_batch(
    seed: int, step: int, n: int, batch: int, shape: tuple[int, ...]
) -> tuple[Tensor, Tensor, Tensor]:
    """``(indices, timesteps, noise)`` of step ``step``: a function of ``(seed, step)`` only."""
    g = _step_generator(seed, step)
    idx = torch.randint(n, (batch,), generator=g)
    t = torch.randint(1000, (batch,), generator=g)
    noise = torch.randn((batch, *shape), generator=g)
    return idx, t, noise


@torch.no_grad()
def _ema_update(ema: dict[str, Tensor], model: torch.nn.Module, decay: float, updates: int) -> None:
    d = min(decay, (1 + updates) / (10 + updates))
    for name, p in model.state_dict().items():
        if p.dtype.is_floating_point:
            ema[name].mul_(d).add_(p.detach().float(), alpha=1 - d)
        else:
            ema[name].copy_(p)


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(
    data: str | os.PathLike,
    autoencoder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    command: str | None = None,
    export_dtype: str = "fp32",
) -> TrainResult:
    """Train a latent prior on ``data`` (see :func:`psld.training.data.resolve_source`) over the frozen
    ``autoencoder`` (:func:`psld.training.autoencoder.load_autoencoder`) and write a diffusers model
    folder to ``out`` (unet, vae with the measured ``scaling_factor``, scheduler, ``model_index.json``,
    model card ``README.md``, ``samples.png``) that :func:`psld.load_model` loads.

    ``resume=True`` continues from ``out/checkpoint/checkpoint.pt`` (written every
    ``config.checkpoint_every`` steps); the result equals an uninterrupted run's. ``stop_after`` ends
    the run after that many steps of this call (a deliberate interruption, for tests). Bad input raises
    ``ValueError`` with one line before anything is written.
    """
    from psld.training.checks import check_train_inputs
    from psld.training.export import export_model
    from psld.training.latents import cached_latents

    config = config or TrainConfig()
    source, vae, vae_cls = check_train_inputs(data, autoencoder, out, config, resume, export_dtype)
    from accelerate import Accelerator

    accelerator = Accelerator(mixed_precision="bf16" if config.bf16 else "no")
    world, rank = accelerator.num_processes, accelerator.process_index
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {world} processes")
    out = Path(out)
    ckpt_dir = out / "checkpoint"
    if accelerator.is_main_process:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    with accelerator.main_process_first():
        raw = cached_latents(
            source, vae, out / "cache", config.max_images, progress and accelerator.is_main_process
        )
    scaling = float(1.0 / raw.double().std())
    latents = (raw.float() * scaling).to(accelerator.device)
    n, shape = latents.shape[0], tuple(latents.shape[1:])

    torch.manual_seed(config.seed)  # the UNet's initial weights
    unet = build_unet(config, shape[0], shape[1])
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    ema = {k: v.detach().float().clone() for k, v in unet.state_dict().items()}
    start, history, window = 0, [], []
    ckpt_path = ckpt_dir / _CHECKPOINT
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["config"] != config.to_dict():
            raise ValueError(
                f"checkpoint in {str(ckpt_dir)!r} was written with other settings; pass the same ones"
            )
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        ema = state["ema"]
        start, history, window = int(state["step"]), list(state["losses"]), list(state.get("window", []))
    unet, optimizer = accelerator.prepare(unet, optimizer)
    from diffusers import DDPMScheduler

    abar = DDPMScheduler(**scheduler_config()).alphas_cumprod.to(accelerator.device)
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    from tqdm.auto import tqdm

    bar = tqdm(
        range(start, end),
        initial=start,
        total=config.steps,
        desc="train",
        unit="step",
        disable=not (progress and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    running, t0 = None, time.perf_counter()
    for step in bar:
        idx, t, noise = draw_batch(config.seed, step, n, config.batch_size, shape)
        rows = slice(rank, None, world)
        idx, t, noise = idx[rows], t[rows].to(accelerator.device), noise[rows].to(accelerator.device)
        a = abar[t].view(-1, 1, 1, 1)
        z_t = a.sqrt() * latents[idx] + (1 - a).sqrt() * noise
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        with accelerator.autocast():
            pred = unet(z_t, t).sample
        loss = (pred.float() - noise).pow(2).mean()
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _ema_update(ema, accelerator.unwrap_model(unet), config.ema_decay, step)
        value = float(accelerator.reduce(loss.detach(), reduction="mean"))
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss became {value} at step {step}; lower the learning rate")
        running = value if running is None else 0.98 * running + 0.02 * value
        window.append(value)
        if (step + 1) % 50 == 0 or step + 1 == config.steps:
            history.append((step + 1, sum(window) / len(window)))
            window = []
        bar.set_postfix(loss=f"{running:.4f}", refresh=False)
        done = step + 1
        if accelerator.is_main_process and (done % config.checkpoint_every == 0 or done == end):
            state = dict(
                unet=accelerator.unwrap_model(unet).state_dict(),
                optimizer=optimizer.state_dict(),
                ema=ema,
                step=done,
                losses=history,
                window=window,
                config=config.to_dict(),
            )
            _save_checkpoint(ckpt_path, state)
    bar.close()
    seconds = time.perf_counter() - t0
    steps_run = max(0, end - start)
    result = TrainResult(
        out=out,
        steps=end,
        final_loss=history[-1][1] if history else float("nan"),
        losses=history,
        seconds=seconds,
        images_per_second=steps_run * config.batch_size / max(seconds, 1e-9),
        scaling_factor=scaling,
        resumed_from=start,
    )
    accelerator.wait_for_everyone()
    if end == config.steps and accelerator.is_main_process:
        final = build_unet(config, shape[0], shape[1])
        final.load_state_dict(ema)
        export_model(out, final, vae, vae_cls, scaling, config, result, source, command, export_dtype)
    return result
