"""Encode a training set once and cache its (unscaled) latents on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from psld.training.data import ImageSource

__all__ = ["cache_key", "cached_latents"]

_CHUNK = 64


def cache_key(source: ImageSource, vae: Any, max_images: int | None) -> str:
    """sha256 of the data source, the image count and the autoencoder's weights (16 hex digits)."""
    h = hashlib.sha256(f"{source.identity}|{max_images}|{type(vae).__name__}".encode())
    for name, tensor in sorted(vae.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def cached_latents(
    source: ImageSource, vae: Any, cache_dir: Path, max_images: int | None = None, progress: bool = True
) -> Tensor:
    """``[N, C, h, w]`` latents ``E(x)`` (the autoencoder's own scale; stored in fp16, returned as float32)
    of the first ``max_images``
    images, read from ``cache_dir`` when a cache with the same key exists, else encoded and written."""
    n = len(source) if max_images is None else min(max_images, len(source))
    path = Path(cache_dir) / f"latents-{cache_key(source, vae, max_images)}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True).float()
    from tqdm.auto import tqdm

    chunks = []
    for start in tqdm(range(0, n, _CHUNK), desc="encode", unit="chunk", disable=not progress):
        x = source.load(start, min(n, start + _CHUNK))
        out = vae.encode(x)
        z = out.latents if hasattr(out, "latents") else out.latent_dist.mode()
        chunks.append(z.half())  # stored in fp16: half the disk, far below the prior's noise
    latents = torch.cat(chunks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(latents, tmp)
    os.replace(tmp, path)
    return latents.float()
