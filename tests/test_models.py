"""diffusers adapters and loading, on tiny random models saved to disk and loaded with psld.load_model."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import types

import pytest
import torch

import psld
from psld.models.adapters import KLDecoder, KLEncoder, UNetPrior, VQDecoder, VQEncoder


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_import_psld_is_light():
    code = (
        "import sys, psld\n"
        "heavy = [m for m in ('diffusers', 'transformers', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(psld.sample) and psld.PSLDConfig and psld.SampleOutput\n"
        "assert 'diffusers' not in sys.modules\n"
        "print(psld.list_tasks())\n"
        "assert 'diffusers' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "inpaint-random" in out.stdout


def test_lazy_exports_resolve():
    from psld.models.loading import LatentModel, load_model
    from psld.restore import SolveOutput, solve

    assert psld.load_model is load_model and psld.LatentModel is LatentModel
    assert psld.SolveOutput is SolveOutput
    assert psld.solve is solve  # the function, whichever submodules were imported before
    importlib.import_module("psld.restore")  # importing the module must not rebind psld.solve
    assert psld.solve is solve and isinstance(psld.solve, types.FunctionType)
    with pytest.raises(AttributeError):
        psld.no_such_name  # noqa: B018


def test_sd_model_metadata(tiny_sd):
    from diffusers import DDIMScheduler

    m = tiny_sd
    assert m.family == "sd" and m.conditional
    assert (m.latent_factor, m.latent_channels, m.size_multiple) == (8, 4, 8)
    assert (m.steps_offset, m.set_alpha_to_one, m.timestep_spacing) == (1, False, "leading")
    assert m.scheduler_settings() == {
        "steps_offset": 1,
        "set_alpha_to_one": False,
        "timestep_spacing": "leading",
    }
    ac = m.prior.alphas_cumprod
    assert ac.dtype == torch.float64 and ac.shape == (1000,)
    ref = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    assert torch.allclose(ac, ref.double(), atol=1e-6)
    assert isinstance(m.encoder, KLEncoder) and isinstance(m.decoder, KLDecoder)
    assert m.latent_shape(32, 40) == (4, 4, 5)
    with pytest.raises(ValueError, match="multiple"):
        m.latent_shape(30, 40)


def test_ldm_model_metadata(tiny_ldm):
    m = tiny_ldm
    assert m.family == "ldm" and not m.conditional
    # VQ f=4, UNet2DModel with two levels needs even latents: image multiple 8
    assert (m.latent_factor, m.latent_channels, m.size_multiple) == (4, 3, 8)
    assert isinstance(m.encoder, VQEncoder) and isinstance(m.decoder, VQDecoder)
    assert m.encoder.scaling_factor == 1.0


@pytest.mark.parametrize("which", ["tiny_sd", "tiny_ldm"])
def test_modules_frozen_and_eval(which, request):
    m = request.getfixturevalue(which)
    for module in m.modules():
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("which", ["tiny_sd", "tiny_ldm"])
def test_encode_decode_shapes_and_gradients(which, request):
    m = request.getfixturevalue(which)
    x = torch.rand(2, 3, 32, 40) * 2 - 1
    z = m.encoder(x)
    assert z.shape == (2, *m.latent_shape(32, 40)) and z.dtype == torch.float32
    zz = z.detach().requires_grad_(True)
    img = m.decoder(zz)
    assert img.shape == x.shape
    img.square().sum().backward()
    assert zz.grad is not None and zz.grad.abs().sum() > 0  # VQ: straight-through quantiser
    for module in m.modules():
        assert all(p.grad is None for p in module.parameters())
    # the encoder is differentiable in its input too
    xx = x.clone().requires_grad_(True)
    m.encoder(xx).sum().backward()
    assert xx.grad.abs().sum() > 0


def test_vq_decoder_quantises(tiny_ldm):
    z = torch.randn(1, 3, 8, 8)
    quantised = tiny_ldm.decoder(z)
    plain = VQDecoder(tiny_ldm.decoder.vae, quantize=False)(z)
    assert not torch.allclose(quantised, plain)


def test_kl_posterior_sample_per_row(tiny_sd):
    enc = tiny_sd.encoder
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    both = enc.sample(x, _gens(3, 4))
    one = enc.sample(x[1:], _gens(4))
    assert torch.allclose(both[1:], one, atol=1e-5)
    assert not torch.allclose(both, enc(x))
    assert torch.equal(enc(x), enc(x))  # mode: deterministic


def test_prior_eps_grad_and_cfg_batch(tiny_sd):
    prior = tiny_sd.prior
    seen = []
    hook = prior.unet.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    try:
        z = torch.randn(2, 4, 4, 4, requires_grad=True)
        e1 = prior.eps(z, 500)
        e1.sum().backward()
        assert z.grad is not None and z.grad.abs().sum() > 0
        assert seen == [2]  # guidance scale 1: no doubled batch
        cfg = prior.with_prompt(guidance_scale=7.5)
        e2 = cfg.eps(z.detach(), 500)
        assert seen == [2, 4]  # doubled batch for CFG
        # official setting: empty prompt for both -> e_u + s (e_c - e_u) == e_c
        assert torch.allclose(e1.detach(), e2, atol=1e-5)
    finally:
        hook.remove()


def test_prompt_changes_prediction(tiny_sd):
    emb = tiny_sd.encode_prompt("the cat")
    assert emb.shape == (1, 16, 16)
    z = torch.randn(1, 4, 4, 4)
    other = tiny_sd.with_prompt("the cat")
    assert other.prior.unet is tiny_sd.prior.unet  # shared modules
    assert not torch.allclose(other.prior.eps(z, 100), tiny_sd.prior.eps(z, 100))


def test_unconditional_rejects_prompt(tiny_ldm):
    assert tiny_ldm.with_prompt("") is tiny_ldm
    with pytest.raises(ValueError, match="unconditional"):
        tiny_ldm.with_prompt("a face")


class _FixedUNet(torch.nn.Module):
    """A stand-in UNet returning a fixed prediction (to test the prediction-type conversions)."""

    class _Out:
        def __init__(self, sample):
            self.sample = sample

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value
        self.config = type("C", (), {"cross_attention_dim": None})()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return self._Out(self.value.to(x.dtype) + 0 * x)


@pytest.mark.parametrize("kind", ["v_prediction", "sample"])
def test_prediction_type_conversion(kind):
    ac = torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 3, 3, generator=g), torch.randn(1, 4, 3, 3, generator=g)
    t = 600
    a = float(ac[t])
    z = a**0.5 * x0 + (1 - a) ** 0.5 * eps
    value = a**0.5 * eps - (1 - a) ** 0.5 * x0 if kind == "v_prediction" else x0
    prior = UNetPrior(_FixedUNet(value), ac, prediction_type=kind)
    assert torch.allclose(prior.eps(z, t), eps, atol=1e-5)
    assert not prior.unet.w.requires_grad and not prior.unet.training


def test_half_precision_unet_keeps_float32_interface(tiny_sd_path):
    m = psld.load_model(tiny_sd_path, device="cpu", dtype="bf16")
    assert m.dtype == torch.bfloat16 and m.prior.unet.dtype == torch.bfloat16
    assert m.vae_dtype == torch.float32  # force_upcast: the VAE stays fp32 for the gradients
    z = torch.randn(1, 4, 4, 4, requires_grad=True)
    e = m.prior.eps(z, 300)
    assert e.dtype == torch.float32
    e.sum().backward()
    assert z.grad.dtype == torch.float32
    assert m.decoder(z.detach()).dtype == torch.float32


def test_memory_options(tiny_sd_path):
    m = psld.load_model(tiny_sd_path, device="cpu", vae_slicing=True, vae_tiling=True, checkpointing=True)
    assert m.decoder.vae.use_slicing and m.decoder.vae.use_tiling
    plain = psld.load_model(tiny_sd_path, device="cpu")
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))  # inputs fixed, not global RNG
    zs = [z.clone().requires_grad_(True) for _ in range(2)]
    outs = [m.decoder(zs[0]), plain.decoder(zs[1])]
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for o in outs:
        o.square().sum().backward()
    assert torch.allclose(zs[0].grad, zs[1].grad, atol=1e-4)
    # checkpointed posterior sampling: the noise is drawn once, so value and gradient match
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    samples = [m.encoder.sample(xs[0], _gens(1, 2)), plain.encoder.sample(xs[1], _gens(1, 2))]
    assert torch.allclose(samples[0], samples[1], atol=1e-5)
    for s in samples:
        s.square().sum().backward()
    assert torch.allclose(xs[0].grad, xs[1].grad, atol=1e-4)
    # the backward recomputation must not draw from the caller's generator again
    g = torch.Generator().manual_seed(7)
    m.encoder.sample(x.clone().requires_grad_(True), g).sum().backward()
    ref = torch.Generator().manual_seed(7)
    torch.randn(samples[0].shape, generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())


def test_autoencoder_tiny_folder(tiny_sd_path, tmp_path):
    from diffusers import AutoencoderTiny

    folder = tmp_path / "sd-taesd"
    shutil.copytree(tiny_sd_path, folder)
    shutil.rmtree(folder / "vae")
    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(4, 4, 4, 4),
        decoder_block_out_channels=(4, 4, 4, 4),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    ).save_pretrained(folder / "vae")
    index = json.loads((folder / "model_index.json").read_text())
    index["vae"] = ["diffusers", "AutoencoderTiny"]
    (folder / "model_index.json").write_text(json.dumps(index))
    m = psld.load_model(folder, device="cpu")
    assert m.latent_factor == 8 and m.latent_channels == 4
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    z = m.encoder(x)
    assert z.shape == (1, 4, 2, 3)
    assert torch.equal(m.encoder.sample(x, _gens(0)), z)  # deterministic encoder
    assert m.decoder(z).shape == x.shape


def _assert_one_line_error(fn, match):
    with pytest.raises(ValueError, match=match) as info:
        fn()
    assert "\n" not in str(info.value)


def test_load_errors(tmp_path, tiny_sd_path):
    _assert_one_line_error(lambda: psld.load_model(tmp_path / "missing" / "model"), "does not exist")
    _assert_one_line_error(lambda: psld.load_model(tmp_path), "not a diffusers model folder")
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"0")
    _assert_one_line_error(lambda: psld.load_model(f), "single-file")
    _assert_one_line_error(lambda: psld.load_model("psld-test/not-a-cached-model"), "hub")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd_path, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    _assert_one_line_error(lambda: psld.load_model(broken), "could not load model")
    _assert_one_line_error(lambda: psld.load_model(tiny_sd_path, dtype="int8"), "dtype")
