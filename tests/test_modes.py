"""Runtime modes: low memory (block checkpointing, VAE slicing, text encoder on CPU) and channels-last.

Both change only how the same math is computed: the guided update must equal the default mode's.
"""

from __future__ import annotations

import torch

import psld
from psld.models.modes import autoencoders
from psld.operators import RandomInpainting


def _guided_update(model) -> torch.Tensor:
    op = RandomInpainting((3, 32, 32), drop=0.5, batch=2, seed=0)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    cfg = psld.PSLDConfig(num_steps=2, steps_offset=1, set_alpha_to_one=False)
    return psld.sample(model.prior, model.encoder, model.decoder, op, op(x), config=cfg, latents=z).z


def _flops(fn) -> int:
    from psld.models.flops import FlopCounter

    with FlopCounter() as counter:
        fn()
    return counter.total


def test_low_memory_same_update_and_recomputes(tiny_sd_path, tiny_sd):
    m = psld.load_model(tiny_sd_path, device="cpu", low_memory=True)
    assert m.prior.unet.is_gradient_checkpointing
    assert all(vae.is_gradient_checkpointing and vae.use_slicing for vae in autoencoders(m))
    assert m.text_encoder.device.type == "cpu"
    plain = psld.load_model(tiny_sd_path, device="cpu")
    assert torch.allclose(_guided_update(m), _guided_update(plain), atol=1e-6)
    # the checkpointed blocks run again in the backward pass: more FLOPs for the same update
    assert _flops(lambda: _guided_update(m)) > 1.2 * _flops(lambda: _guided_update(plain))


def test_to_keeps_the_offloaded_text_encoder_on_the_cpu(tiny_sd_path):
    low = psld.load_model(tiny_sd_path, device="cpu", low_memory=True)
    plain = psld.load_model(tiny_sd_path, device="cpu")
    for m in (low, plain):
        m.to(dtype=torch.bfloat16)
        assert m.prior.unet.dtype == torch.bfloat16
    # low memory: the text encoder is left where the offload put it (CPU, fp32); otherwise it moves
    assert low.text_encoder_offloaded and not plain.text_encoder_offloaded
    assert next(low.text_encoder.parameters()).dtype == torch.float32
    assert next(plain.text_encoder.parameters()).dtype == torch.bfloat16


def test_channels_last_same_update(tiny_sd_path, tiny_sd):
    m = psld.load_model(tiny_sd_path, device="cpu", channels_last=True)
    conv = next(p for p in m.decoder.vae.parameters() if p.dim() == 4 and p.shape[-1] == 3)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    unet_conv = next(p for p in m.prior.unet.parameters() if p.dim() == 4 and p.shape[-1] == 3)
    assert unet_conv.is_contiguous(memory_format=torch.channels_last)
    # measured difference 1.7e-7 relative (summation order only)
    assert torch.allclose(_guided_update(m), _guided_update(tiny_sd), rtol=1e-4, atol=1e-5)


def test_low_memory_cli_flag_parses():
    from psld.cli import build_parser

    args = build_parser().parse_args(["restore", "in.png", "-t", "denoise", "--model", "m", "--low-memory"])
    assert args.low_memory
