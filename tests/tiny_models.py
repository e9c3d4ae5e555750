"""Tiny random diffusers models for tests: built in-process, saved with ``save_pretrained``.

Nothing is downloaded. Two model folders can be built:

* :func:`build_tiny_sd` - a Stable-Diffusion-shaped pipeline folder: ``UNet2DConditionModel`` (cross
  attention on 16-dim text features), ``AutoencoderKL`` with f = 8 and 4 latent channels (like SD), a
  ``DDIMScheduler`` with SD's ``scaled_linear`` betas, and a 1-layer ``CLIPTextModel`` with a
  ``CLIPTokenizer`` whose vocabulary (``vocab.json``/``merges.txt``) is written here.
* :func:`build_tiny_ldm` - an unconditional LDM folder: ``UNet2DModel`` + ``VQModel`` (f = 4, 3 latent
  channels, like the FFHQ LDM) + ``DDIMScheduler``.

Weights are random but seeded, so every build is identical.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def _write_tokenizer_files(folder: Path) -> Path:
    """A tiny CLIP BPE vocabulary: the special tokens, single letters/digits and a few merges."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols:
        vocab[s] = len(vocab)
        vocab[s + "</w>"] = len(vocab)
    merges = [("a", "b"), ("c", "d"), ("t", "h"), ("th", "e</w>")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return folder


def build_tiny_sd(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random Stable Diffusion pipeline folder at ``path`` and return it."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    path = Path(path)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(4, 4, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    text_config = CLIPTextConfig(
        vocab_size=100,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    text_encoder = CLIPTextModel(text_config)
    tok_dir = _write_tokenizer_files(path.parent / (path.name + "-tokenizer-src"))
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), model_max_length=16)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(path))
    return path


def build_tiny_ldm(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random unconditional LDM folder (UNet2DModel + VQModel + DDIM) at ``path``."""
    import diffusers
    from diffusers import DDIMScheduler, UNet2DModel, VQModel

    path = Path(path)
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vqvae = VQModel(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(4, 8, 8),
        layers_per_block=1,
        latent_channels=3,
        num_vq_embeddings=4096,
        vq_embed_dim=3,
        norm_num_groups=4,
        sample_size=32,
    )
    # diffusers initialises the codebook in (-1/n, 1/n): every latent would snap to ~0. Spread the
    # codes like unit-variance latents so that the quantised decoder depends on z (as a trained one does).
    with torch.no_grad():
        vqvae.quantize.embedding.weight.normal_()
    scheduler = DDIMScheduler(
        beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False
    )
    path.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(str(path / "unet"))
    vqvae.save_pretrained(str(path / "vqvae"))
    scheduler.save_pretrained(str(path / "scheduler"))
    index = {
        "_class_name": "LDMPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DModel"],
        "vqvae": ["diffusers", "VQModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


def build_tiny_pixel(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random pixel-space DDPM folder (``UNet2DModel`` on RGB + ``DDPMScheduler``, no VAE)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    path = Path(path)
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(str(path))
    return path
