"""The README's ``model.to(device, dtype)`` example prints nothing (diffusers warned on every cast)."""

from __future__ import annotations

import logging

import torch

import psld


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_latent_model_to_casts_without_diffusers_warnings(tiny_sd_path):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlogging

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_path))
    model = psld.load_model(
        unet=pipe.unet, vae=pipe.vae, scheduler=pipe.scheduler, text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
    )  # fmt: skip
    root, handler, level = logging.getLogger("diffusers"), _Records(), dlogging.get_verbosity()
    dlogging.set_verbosity_warning()  # diffusers' default, whatever an earlier test set
    root.addHandler(handler)
    try:
        model.to("cpu", torch.bfloat16)
    finally:
        root.removeHandler(handler)
        dlogging.set_verbosity(level)
    assert handler.messages == []
    assert pipe.unet.dtype == torch.bfloat16 and model.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32  # the VAE keeps its dtype
    model.to(dtype=torch.float32)
    assert pipe.unet.dtype == torch.float32
