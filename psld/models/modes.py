"""Runtime modes of a loaded model: low memory and channels-last layout.

* ``low_memory``: per-block activation checkpointing inside the UNet and the autoencoder (diffusers'
  ``enable_gradient_checkpointing``: each down/mid/up block keeps only its input during the guided
  forward pass and is recomputed in the backward pass, so the peak holds one block's activations
  instead of the whole network's, for about one more forward pass of each module), batch slicing of the
  autoencoder (``enable_slicing``: one image at a time), and the text encoder moved to the CPU once the
  prompt is encoded (it is needed again only for a new prompt). The math is unchanged: the results
  equal the default mode's up to floating-point reordering. Half precision is chosen separately
  (``dtype``; on CUDA the UNet defaults to fp16 with the VAE upcast to fp32).
* ``channels_last``: the UNet and autoencoder weights in ``torch.channels_last`` layout, so that the
  convolutions run NHWC (oneDNN on CPU, cuDNN on GPU); same math, a different summation order.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["apply_modes", "autoencoders"]


def autoencoders(model: Any) -> list[Any]:
    """The distinct autoencoder modules of ``model`` (none for a pixel-space model)."""
    found: dict[int, torch.nn.Module] = {}
    for part in (model.encoder, model.decoder):
        vae = getattr(part, "vae", None)
        if vae is not None:
            found[id(vae)] = vae
    return list(found.values())


def _checkpoint_blocks(module: Any) -> None:
    if getattr(module, "_supports_gradient_checkpointing", False):
        module.enable_gradient_checkpointing()


def apply_modes(model: Any, *, low_memory: bool = False, channels_last: bool = False) -> Any:
    """Switch ``model`` (a :class:`~psld.models.loading.LatentModel`) to the requested modes in place."""
    vaes = autoencoders(model)
    if low_memory:
        _checkpoint_blocks(model.prior.unet)
        for vae in vaes:
            _checkpoint_blocks(vae)
            if hasattr(vae, "enable_slicing"):
                vae.enable_slicing()
        if model.text_encoder is not None:
            model.text_encoder.to("cpu")
            model.text_encoder_offloaded = True
    if channels_last:
        for module in (model.prior.unet, *vaes):
            module.to(memory_format=torch.channels_last)
    return model
