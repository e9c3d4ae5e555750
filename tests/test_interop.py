"""diffusers objects as models: pipelines and components share their weights with the LatentModel."""

from __future__ import annotations

import pytest
import torch

import psld


@pytest.fixture(scope="module")
def sd_pipe(tiny_sd_path):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_sd_path, safety_checker=None)


@pytest.fixture(scope="module")
def ldm_pipe(tiny_ldm_path):
    from diffusers import LDMPipeline

    return LDMPipeline.from_pretrained(tiny_ldm_path)


def _same_tensors(module_a, module_b) -> bool:
    pa, pb = list(module_a.parameters()), list(module_b.parameters())
    if len(pa) != len(pb):
        return False
    return all(a is b and a.data_ptr() == b.data_ptr() for a, b in zip(pa, pb, strict=True))


def _guided_grad(model, seed=0):
    """Gradient of ||D(z0_hat)||^2 through UNet and decoder at one latent (a guided step's backward)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, model.latent_channels, 4, 4, generator=g).requires_grad_(True)
    eps = model.prior.eps(z, 500)
    x0 = model.decoder(z - 0.5 * eps)
    (grad,) = torch.autograd.grad(x0.square().sum() + model.encoder(x0).square().sum(), z)
    return eps.detach(), grad


def test_sd_pipeline_shares_weights_and_matches_folder(sd_pipe, tiny_sd):
    ptrs = [p.data_ptr() for p in sd_pipe.unet.parameters()]
    m = psld.load_model(sd_pipe)
    assert m.family == "sd" and m.source == "StableDiffusionPipeline"
    assert m.prior.unet is sd_pipe.unet and m.decoder.vae is sd_pipe.vae
    assert m.text_encoder is sd_pipe.text_encoder
    assert [p.data_ptr() for p in m.prior.unet.parameters()] == ptrs  # not copied
    assert not any(p.requires_grad for p in sd_pipe.unet.parameters())  # frozen in place
    assert (m.latent_factor, m.latent_channels, m.size_multiple) == (8, 4, 8)
    assert m.scheduler_settings() == tiny_sd.scheduler_settings()
    assert torch.equal(m.prior.alphas_cumprod, tiny_sd.prior.alphas_cumprod)
    assert torch.equal(m.prior.prompt_embeds, tiny_sd.prior.prompt_embeds)
    eps_a, grad_a = _guided_grad(m)
    eps_b, grad_b = _guided_grad(tiny_sd)
    assert torch.allclose(eps_a, eps_b, atol=1e-6) and torch.allclose(grad_a, grad_b, atol=1e-6)


def test_components_share_weights(sd_pipe):
    m = psld.load_model(
        unet=sd_pipe.unet,
        vae=sd_pipe.vae,
        scheduler=sd_pipe.scheduler,
        text_encoder=sd_pipe.text_encoder,
        tokenizer=sd_pipe.tokenizer,
        prompt="the cat",
    )
    assert _same_tensors(m.prior.unet, sd_pipe.unet) and _same_tensors(m.encoder.vae, sd_pipe.vae)
    assert not torch.equal(m.prior.prompt_embeds, m.prior.negative_prompt_embeds)  # prompt vs ""


def test_ldm_pipeline(ldm_pipe, tiny_ldm):
    m = psld.load_model(ldm_pipe)
    assert m.family == "ldm" and not m.conditional and m.decoder.vae is ldm_pipe.vqvae
    assert (m.latent_factor, m.latent_channels, m.size_multiple) == (4, 3, 8)
    eps_a, grad_a = _guided_grad(m)
    eps_b, grad_b = _guided_grad(tiny_ldm)
    assert torch.allclose(eps_a, eps_b, atol=1e-6) and torch.allclose(grad_a, grad_b, atol=1e-6)


def test_solve_accepts_pipeline(sd_pipe):
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = psld.solve(
        x, "denoise", model=sd_pipe, simulate=True, num_inference_steps=2, seed=0, output_type="pt"
    )
    assert out.images.shape == (1, 3, 16, 16) and torch.isfinite(out.images).all()


def test_to_moves_and_casts(tiny_sd_path):
    m = psld.load_model(tiny_sd_path, device="cpu")
    assert m.to(dtype="bf16") is m
    assert m.dtype == torch.bfloat16 and m.prior.unet.dtype == torch.bfloat16
    assert m.text_encoder.dtype == torch.bfloat16 and m.prior.prompt_embeds.dtype == torch.bfloat16
    assert m.vae_dtype == torch.float32 and m.decoder.vae.dtype == torch.float32  # vae_dtype kept
    m.to("cpu", torch.float32, vae_dtype="bf16")
    assert m.prior.unet.dtype == torch.float32 and m.encoder.vae.dtype == torch.bfloat16
    z = torch.randn(1, 4, 4, 4)
    assert m.decoder(z).dtype == torch.float32  # float32 interface kept


def test_cast_on_request_only(tiny_sd_path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_path, safety_checker=None)
    m = psld.load_model(pipe, dtype="bf16")
    assert m.dtype == torch.bfloat16 and pipe.unet.dtype == torch.bfloat16  # in place, as Module.to
    assert m.vae_dtype == torch.float32  # vae keeps its own dtype unless vae_dtype is given


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda p: psld.load_model(object()), "not a supported diffusers pipeline"),
        (lambda p: psld.load_model(), "needs a model"),
        (lambda p: psld.load_model(unet=p.unet, scheduler=p.scheduler), "vae must be"),
        (lambda p: psld.load_model(unet=p.vae, vae=p.vae, scheduler=p.scheduler), "unet must be"),
        (lambda p: psld.load_model(unet=p.unet, vae=p.unet, scheduler=p.scheduler), "vae must be"),
        (lambda p: psld.load_model(unet=p.unet, vae=p.vae, scheduler=object()), "scheduler must be"),
        (lambda p: psld.load_model(unet=p.unet, vae=p.vae, scheduler=p.scheduler), "text_encoder"),
        (lambda p: psld.load_model(p, unet=p.unet), "not both"),
        (lambda p: psld.load_model(p, safety_checker=None), "unknown arguments"),
    ],
)
def test_bad_objects(sd_pipe, call, match):
    with pytest.raises(ValueError, match=match) as info:
        call(sd_pipe)
    assert "\n" not in str(info.value)


def test_unconditional_pipeline_rejects_prompt(ldm_pipe):
    with pytest.raises(ValueError, match="unconditional"):
        psld.load_model(ldm_pipe, prompt="a face")


def test_ddpm_pipeline_is_pixel_family(tmp_path):
    from diffusers import DDPMPipeline
    from tiny_models import build_tiny_pixel

    folder = psld.load_model(build_tiny_pixel(tmp_path / "ddpm"), device="cpu")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "ddpm")
    m = psld.load_model(pipe)
    assert m.family == "pixel" and m.prior.unet is pipe.unet and m.source == "DDPMPipeline"
    assert (m.latent_factor, m.latent_channels, m.size_multiple) == (1, 3, folder.size_multiple)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(m.encoder(x), x) and torch.equal(m.decoder(x), x)
    z = torch.randn(1, 3, 16, 16)
    assert torch.allclose(m.prior.eps(z, 400), folder.prior.eps(z, 400), atol=1e-6)
    assert m.to(dtype="bf16").prior.unet.dtype == torch.bfloat16  # no autoencoder to move
    assert psld.load_model(unet=pipe.unet, scheduler=pipe.scheduler, low_memory=True).family == "pixel"
