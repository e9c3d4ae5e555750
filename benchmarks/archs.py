"""Model architectures for the benchmarks, built with random (seeded) weights: nothing is downloaded.

``sd15`` and ``sd21`` are the public Stable Diffusion v1.5 and v2.1-base UNet configurations (860M and
865M parameters) with SD's VAE (84M); ``small`` is a CPU-sized model of the same layout and ``tiny`` a
smoke-test size. Time and memory do not depend on the weights' values.
"""

from __future__ import annotations

import torch

_SD_BLOCKS = dict(
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
)
UNETS = {
    "sd15": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        **_SD_BLOCKS,
    ),
    "sd21": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
        **_SD_BLOCKS,
    ),
    "small": dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=4,
        norm_num_groups=16,
    ),
    "tiny": dict(
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    ),
}
_SD_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2)
VAES = {
    "sd15": _SD_VAE,
    "sd21": _SD_VAE,
    "small": dict(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=16),
    "tiny": dict(block_out_channels=(4, 4, 8, 8), layers_per_block=1, norm_num_groups=4),
}
#: SD's scheduler (both versions at 512 use epsilon prediction)
SD_SCHEDULER = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build(arch: str, device: torch.device, dtype: torch.dtype, vae_dtype: torch.dtype):
    """``(unet, vae, prompt_embeds)``: random seeded UNet2DConditionModel and AutoencoderKL (f = 8).

    The modules are initialised on ``device`` (fast on CUDA); the weights depend on the device's RNG.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(0)
    with device:
        unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, **UNETS[arch])
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            sample_size=512,
            scaling_factor=0.18215,
            **VAES[arch],
        )
    dim = UNETS[arch]["cross_attention_dim"]
    embeds = torch.randn(1, 77, dim, generator=torch.Generator().manual_seed(1))
    unet = unet.to(device, dtype).requires_grad_(False).eval()
    vae = vae.to(device, vae_dtype).requires_grad_(False).eval()
    return unet, vae, embeds.to(device, dtype)
