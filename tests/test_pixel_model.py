"""The pixel-space model family of psld.load_model (DDPMPipeline layout: UNet2DModel + scheduler, no VAE)."""

from __future__ import annotations

import json

import pytest
import torch

import psld
from psld.protocols import Identity


@pytest.fixture(scope="module")
def tiny_pixel_path(tmp_path_factory):
    from tiny_models import build_tiny_pixel

    return build_tiny_pixel(tmp_path_factory.mktemp("models") / "tiny-pixel")


@pytest.fixture(scope="module")
def tiny_pixel(tiny_pixel_path):
    return psld.load_model(tiny_pixel_path, device="cpu")


def test_pixel_folder_loads_as_identity_latent_model(tiny_pixel_path, tiny_pixel):
    index = json.loads((tiny_pixel_path / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline" and "vae" not in index and "vqvae" not in index
    m = tiny_pixel
    assert m.family == "pixel" and m.latent_factor == 1 and m.latent_channels == 3
    assert isinstance(m.encoder, Identity) and isinstance(m.decoder, Identity)
    assert m.size_multiple == 2  # two UNet levels, no autoencoder factor
    assert m.latent_shape(16, 24) == (3, 16, 24)
    assert m.modules() == [m.prior.unet]
    x = torch.rand(1, 3, 8, 8)
    assert m.decoder(m.encoder(x)) is x


def test_pixel_model_runs_dps_through_solve(tiny_pixel):
    img = torch.rand(3, 16, 16)
    cfg = psld.PSLDConfig(method="dps", num_steps=2, omega=0.5)
    a = psld.solve(img, "sr2", model=tiny_pixel, simulate=True, seed=3, config=cfg, output_type="pt", progress=False)
    b = psld.solve(img, "sr2", model=tiny_pixel, simulate=True, seed=3, config=cfg, output_type="pt", progress=False)
    assert a.images.shape == (1, 3, 16, 16) and a.measurement.shape == (1, 3, 8, 8)
    assert torch.equal(a.images, b.images)
    # the latents of a pixel model are the image itself (identity decoder): x = (z + 1) / 2, clamped
    assert torch.allclose(a.images, ((a.latents.float() + 1) / 2).clamp(0, 1), atol=1e-6)
    # the default configuration for a pixel model is dps (LDM-scale task preset)
    c = psld.solve(img, "deblur-gaussian", model=tiny_pixel, simulate=True, seed=0, num_inference_steps=2,
                   output_type="pt", progress=False)
    assert c.config.method == "dps"


def test_pixel_model_refuses_latent_methods(tiny_pixel):
    with pytest.raises(ValueError, match="'dps' only"):
        psld.solve(torch.rand(3, 16, 16), "denoise", model=tiny_pixel, simulate=True,
                   config=psld.PSLDConfig(method="psld", num_steps=2), progress=False)
