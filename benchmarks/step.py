"""Per-step time and peak memory: our PSLD step against an "official-style" step, same weights.

The official-style step reproduces the costs of the official code (docs/official.md §2, items 7-11):
classifier-free guidance at scale 7.5 with the empty prompt for both branches (the UNet runs on a
doubled batch), UNet parameters that require grad (so the backward pass also produces parameter
gradients), one norm over the whole batch, a sampled KL encoding, fresh noise on the prediction, and
a host sync (``.item()``) every step. Ours is ``psld.sample`` with the preset switches: frozen
parameters, guidance scale 1, per-sample norms, no sync inside the loop.

Weights are random (time and memory do not depend on their values); the architectures are either a
small CPU-sized model or the public Stable Diffusion v1.5 UNet/VAE configurations.

    python benchmarks/step.py                       # CPU, small model, 256x256
    python benchmarks/step.py --arch sd15 --res 512 --dtype fp16 --device cuda

Both variants are timed in the same process on the same weights and seeds (after one warm-up step
each); on CUDA the peak allocated memory is reset before each, on CPU each variant's peak RSS comes
from a child process running it alone. The ratio official/ours is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    sample_size=512,
    scaling_factor=0.18215,
)
SMALL_UNET = dict(
    sample_size=32,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64,
    attention_head_dim=4,
    norm_num_groups=16,
)
SMALL_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    layers_per_block=1,
    block_out_channels=(16, 32, 32, 32),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=16,
    sample_size=256,
    scaling_factor=0.18215,
)
SD_SCHEDULER = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build(arch: str, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    unet_cfg, vae_cfg = (SD15_UNET, SD15_VAE) if arch == "sd15" else (SMALL_UNET, SMALL_VAE)
    unet = UNet2DConditionModel(**unet_cfg).to(device, dtype)
    vae = AutoencoderKL(**vae_cfg).to(device, torch.float32)  # VAE in fp32 under gradient (both variants)
    embeds = torch.randn(1, 77, unet_cfg["cross_attention_dim"], generator=torch.Generator().manual_seed(1))
    return unet, vae, embeds.to(device, dtype)


def problem(res: int, batch: int, device: torch.device):
    from psld.operators import RandomInpainting

    op = RandomInpainting((3, res, res), drop=0.5, batch=1, seed=0)
    x = torch.rand(batch, 3, res, res, generator=torch.Generator().manual_seed(2)) * 2 - 1
    return op, op(x.to(device))


def official_style_steps(unet, vae, embeds, op, y, n_steps: int, omega=1.0, gamma=0.1):
    """The official per-step computation, written out (not psld code), ``n_steps`` DDIM steps."""
    from psld.schedule import DDIMSchedule, make_alphas_cumprod

    unet.requires_grad_(True)  # official: UNet parameters stay trainable
    sched = DDIMSchedule.create(make_alphas_cumprod("scaled_linear"), n_steps, steps_offset=1)
    sf = vae.config.scaling_factor
    b, dev = y.shape[0], y.device
    latent = (b, 4, y.shape[-2] // 8, y.shape[-1] // 8)
    z = torch.randn(latent, generator=torch.Generator().manual_seed(3)).to(dev)
    cond = embeds.expand(2 * b, *embeds.shape[1:])
    autocast = torch.autocast(dev.type, dtype=unet.dtype, enabled=unet.dtype != torch.float32)
    for i in range(len(sched)):
        t, a, ap = int(sched.timesteps[i]), float(sched.alpha[i]), float(sched.alpha_prev[i])
        z = z.detach().requires_grad_(True)
        with autocast:
            out = unet(torch.cat([z, z]).to(unet.dtype), t, encoder_hidden_states=cond).sample.float()
        e_u, e_c = out.chunk(2)
        eps = e_u + 7.5 * (e_c - e_u)
        z0 = (z - (1 - a) ** 0.5 * eps) / a**0.5
        z_prev = ap**0.5 * z0 + (1 - ap) ** 0.5 * eps
        x0 = vae.decode(z0 / sf).sample
        meas = torch.linalg.norm(op(x0) + 0.05 * torch.randn_like(y) - y)  # whole-batch norm
        glue_img = y + x0 - op(x0)  # official At = identity for masks
        z_glue = vae.encode(glue_img).latent_dist.sample() * sf
        glue = torch.linalg.norm(z_glue - z0)
        loss = omega * meas + gamma * glue
        loss.backward()  # reaches UNet parameters as well (they require grad)
        z = (z_prev - z.grad).detach()
        unet.zero_grad(set_to_none=True)
        print(f"\rstep {i} loss {loss.item():.3f}", end="", file=sys.stderr)  # host sync every step
    return z


def ours_steps(unet, vae, embeds, op, y, n_steps: int, omega=1.0, gamma=0.1):
    from psld.config import PSLDConfig
    from psld.models.adapters import KLDecoder, KLEncoder, UNetPrior, alphas_cumprod_from_config
    from psld.sampler import sample

    prior = UNetPrior(unet, alphas_cumprod_from_config(SD_SCHEDULER), prompt_embeds=embeds)
    cfg = PSLDConfig(num_steps=n_steps, omega=omega, gamma=gamma, steps_offset=1, set_alpha_to_one=False)
    b = y.shape[0]
    latent = (4, y.shape[-2] // 8, y.shape[-1] // 8)
    gens = [torch.Generator().manual_seed(3 + i) for i in range(b)]
    return sample(
        prior, KLEncoder(vae), KLDecoder(vae), op, y, config=cfg, generator=gens, latent_shape=latent
    ).z


def timed(fn, models, op, y, steps: int, device: torch.device) -> tuple[float, float | None]:
    """Seconds per step of ``fn`` and, on CUDA, its peak allocated MiB (reset before the run)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fn(*models, op, y, steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return seconds, peak


VARIANTS = {"official": official_style_steps, "ours": ours_steps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=("small", "sd15"), default="small")
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed DDIM steps per variant (after 1 warm-up)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="UNet dtype (VAE stays fp32)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--memory-only", choices=tuple(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.res % 8:
        p.error("--res must be a multiple of 8")
    device = torch.device(args.device)
    models = build(args.arch, device, DTYPES[args.dtype])
    op, y = problem(args.res, args.batch, device)
    if args.memory_only:  # child process: one variant, report the process's peak RSS
        VARIANTS[args.memory_only](*models, op, y, args.steps)
        print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return 0
    for fn in VARIANTS.values():  # warm-up both (allocator, kernels, lazy imports)
        fn(*models, op, y, 1)
    rows = {name: timed(fn, models, op, y, args.steps, device) for name, fn in VARIANTS.items()}
    if device.type != "cuda":  # CPU peak memory: each variant alone in a child process
        for name in VARIANTS:
            cmd = [
                sys.executable,
                __file__,
                "--arch",
                args.arch,
                "--res",
                str(args.res),
                "--batch",
                str(args.batch),
                "--steps",
                "1",
                "--dtype",
                args.dtype,
                "--device",
                args.device,
                "--memory-only",
                name,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
            rows[name] = (rows[name][0], json.loads(out.strip().splitlines()[-1])["peak_mib"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    memory = "GPU peak allocated" if device.type == "cuda" else "peak RSS of a process running it alone"
    print(
        f"\n{args.arch} UNet/VAE (random weights), {args.res}x{args.res}, batch {args.batch}, "
        f"UNet {args.dtype}, VAE fp32, {name}; {args.steps} timed steps each, same process"
    )
    print(f"{'variant':<16}{'s/step':>10}{'peak MiB':>12}  ({memory})")
    for key, (sec, peak) in rows.items():
        print(f"{key + '-style' if key == 'official' else key:<16}{sec:>10.3f}{peak:>12.0f}")
    (t_off, m_off), (t_ours, m_ours) = rows["official"], rows["ours"]
    print(
        f"speed-up official/ours: {t_off / t_ours:.2f}x; "
        f"peak-memory ratio official/ours: {m_off / m_ours:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
