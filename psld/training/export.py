"""Write a trained prior as a diffusers model folder, with its model card, samples and loss curve."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from psld.training.config import TrainConfig, scheduler_config

if TYPE_CHECKING:
    from psld.training.config import TrainResult
    from psld.training.data import ImageSource

__all__ = ["export_model", "unconditional_samples"]


@torch.no_grad()
def unconditional_samples(model: Any, n: int, steps: int = 50, seed: int = 0) -> Tensor:
    """``n`` unconditional DDIM (eta 0) samples of a loaded :class:`psld.models.LatentModel`, as images
    ``[n, 3, H, W]`` in [-1, 1]: ``z <- sqrt(a') z0_hat + sqrt(1 - a') eps`` from ``z_T ~ N(0, I)``."""
    from psld.schedule import DDIMSchedule, ddim_step, predict_z0

    sched = DDIMSchedule.create(
        model.prior.alphas_cumprod,
        steps,
        timestep_spacing=model.timestep_spacing,
        steps_offset=model.steps_offset,
        set_alpha_to_one=model.set_alpha_to_one,
    )
    size = int(model.prior.unet.config.sample_size)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((n, model.latent_channels, size, size), generator=g).to(model.device)
    for t, a, a_prev in zip(
        sched.timesteps.tolist(), sched.alpha.tolist(), sched.alpha_prev.tolist(), strict=True
    ):
        eps = model.prior.eps(z, t)
        z = ddim_step(predict_z0(z, eps, a), eps, a_prev, 0.0, None)
    return model.decoder(z).clamp(-1, 1)


def _grid(images: Tensor, path: Path, columns: int = 8) -> None:
    from PIL import Image

    n, _, h, w = images.shape
    rows = -(-n // columns)
    canvas = torch.ones(3, rows * (h + 2), columns * (w + 2))
    for i, im in enumerate(images.cpu()):
        r, c = divmod(i, columns)
        canvas[:, r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = (im + 1) / 2
    array = (canvas.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


def _loss_plot(losses: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 2.6), dpi=100)
    ax.plot([s for s, _ in losses], [v for _, v in losses], lw=1)
    ax.set(xlabel="step", ylabel=r"$\|\epsilon_\theta - \epsilon\|^2$ (mean of 50 steps)", yscale="log")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _card(
    config: TrainConfig,
    result: TrainResult,
    source: ImageSource,
    vae_cls: str,
    params: int,
    command: str | None,
    export_dtype: str,
) -> str:
    every = max(1, len(result.losses) // 12)
    curve = [result.losses[i] for i in range(0, len(result.losses), every)]
    if result.losses and curve[-1] != result.losses[-1]:
        curve.append(result.losses[-1])
    rows = "\n".join(f"| {s} | {v:.4f} |" for s, v in curve)
    used = config.max_images or len(source)
    facts = [
        f"**Data:** {source.kind} `{source.path.name}` ({len(source)} images available, {used} used), "
        f"{config.size}x{config.size} px.",
        f"**Autoencoder (frozen):** `{vae_cls}`; latents scaled by `scaling_factor = "
        f"{result.scaling_factor:.6f}` (1 / their std on the training set, stored in `vae/config.json`).",
        f"**Prior:** diffusers `UNet2DModel`, {params / 1e6:.2f} M parameters, block channels "
        f"{list(config.block_out_channels)}, {config.layers_per_block} block(s) per level, attention at the "
        "coarsest level; `DDPMScheduler` (scaled_linear 0.00085-0.012, 1000 steps, epsilon prediction). "
        f"Weights: EMA (decay {config.ema_decay}), saved in {export_dtype}.",
        f"**Optimiser:** AdamW, lr {config.learning_rate:g}, weight decay {config.weight_decay:g}, "
        f"{config.warmup_steps} warm-up steps then cosine decay, batch {config.batch_size}, {result.steps} "
        f"steps, bf16 autocast {'on' if config.bf16 else 'off'}, seed {config.seed}.",
        f"**Command:** `{command or 'psld.train(...)'}`",
        f"**Compute:** {result.seconds / 60:.1f} min for the last {result.steps - result.resumed_from} steps "
        f"({result.images_per_second:.0f} images/s) on {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.",
        f"**Final loss** (mean of the last 50 steps): {result.final_loss:.4f}.",
    ]
    bullets = "\n".join(f"- {fact}" for fact in facts)
    return f"""# Latent diffusion prior trained with `psld train`

{bullets}

## Loss curve (mean over 50 steps)

| step | loss |
|---|---|
{rows}

![loss](loss.png)

## Unconditional samples (DDIM, 50 steps, eta 0, seed 0)

![samples](samples.png)

Load it with `psld.load_model("{os.fspath(result.out)}")`.
"""


def _drop_unused_vae_keys(path: Path, vae: Any) -> None:
    """Remove config keys the VAE class does not take (diffusers' ``AutoencoderTiny`` saves a
    ``block_out_channels`` alias that its loader then warns about on every load)."""
    import inspect

    accepted = set(inspect.signature(type(vae).__init__).parameters)
    cfg = json.loads(path.read_text())
    kept = {k: v for k, v in cfg.items() if k.startswith("_") or k in accepted}
    if kept != cfg:
        path.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")


def export_model(
    out: Path,
    unet: Any,
    vae: Any,
    vae_cls: str,
    scaling: float,
    config: TrainConfig,
    result: TrainResult,
    source: ImageSource,
    command: str | None,
    export_dtype: str,
) -> None:
    """Write ``unet/``, ``vae/``, ``scheduler/``, ``model_index.json``, ``train_config.json``, the model
    card ``README.md`` with ``samples.png`` and ``loss.png``."""
    import diffusers
    from diffusers import DDPMScheduler

    dtype = torch.float16 if export_dtype == "fp16" else torch.float32
    unet.to(dtype).save_pretrained(out / "unet")
    vae.register_to_config(scaling_factor=scaling)
    vae.to(dtype).save_pretrained(out / "vae")
    vae.float()
    _drop_unused_vae_keys(out / "vae" / "config.json", vae)
    scheduler: Any = DDPMScheduler(**scheduler_config())
    scheduler.save_pretrained(out / "scheduler")
    index = {
        "_class_name": "LatentPriorPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DModel"],
        "vae": ["diffusers", vae_cls],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    from psld.models.loading import load_model

    model = load_model(out, device="cpu", dtype="fp32")
    _grid(unconditional_samples(model, 16, seed=0), out / "samples.png")
    _loss_plot(result.losses, out / "loss.png")
    params = sum(p.numel() for p in unet.parameters())
    (out / "README.md").write_text(_card(config, result, source, vae_cls, params, command, export_dtype))
