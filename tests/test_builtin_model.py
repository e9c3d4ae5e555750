"""The built-in model: ships inside the package, loads offline, restores, and beats pinv where the prior
must fill in what is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import psld
from psld.models.builtin import BUILTIN_MODELS, TEST_INDICES, taesd_path, test_images
from psld.presets import model_preset


@pytest.fixture(scope="module")
def model():
    return psld.load_model("fashion-mnist", device="cpu")


@pytest.fixture(scope="module")
def truth():
    from psld.images import load_images

    return load_images([str(p) for p in test_images()[:8]])


def test_ships_small_with_licence_and_card():
    folder = BUILTIN_MODELS["fashion-mnist"]
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 12 * 2**20
    assert (folder / "LICENSE-TAESD").read_text().startswith("MIT")
    card = (folder / "README.md").read_text()
    assert "Fashion-MNIST" in card and "TAESD" in card and "psld train" in card
    assert len(test_images()) == len(TEST_INDICES) == 32
    for sub in ("unet", "vae"):
        weights = next((folder / sub).glob("*.safetensors"))
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())


def test_loads_offline_by_name(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model.family == "ldm" and model.latent_channels == 4 and model.latent_factor == 8
    vae_config = json.loads((taesd_path() / "config.json").read_text())
    assert vae_config["_class_name"] == "AutoencoderTiny"
    assert 0.8 < vae_config["scaling_factor"] < 1.1  # 1 / std of the Fashion-MNIST latents (0.927)
    assert set(model.presets) >= {"sr4", "inpaint-box", "inpaint-random", "deblur-gaussian"}


def test_taesd_reconstructs_the_shipped_images(model, truth):
    """The shipped autoencoder is the real TAESD: D(E(x)) is close to x (random weights are not)."""
    from psld.evaluation.metrics import psnr

    with torch.no_grad():
        recon = ((model.decoder(model.encoder(truth * 2 - 1)) + 1) / 2).clamp(0, 1)
    values = [psnr(recon[i].permute(1, 2, 0).numpy(), truth[i].permute(1, 2, 0).numpy()) for i in range(8)]
    assert np.mean(values) > 22.0


def _psnr(x, truth):
    from psld.evaluation.metrics import psnr

    return np.array(
        [psnr(x[i].permute(1, 2, 0).numpy(), truth[i].permute(1, 2, 0).numpy()) for i in range(len(x))]
    )


@pytest.mark.parametrize("task", ["inpaint-box", "inpaint-random"])
def test_psld_beats_pinv_where_the_prior_must_fill_in(model, truth, task):
    from psld.demo import restore_set

    restored, measurement, op = restore_set(model, truth, task, ("psld", "pinv"), seed=0, steps=20)
    gain = _psnr(restored["psld"], truth) - _psnr(restored["pinv"], truth)
    assert gain.mean() > MARGIN_DB[task], gain
    # the observed pixels are pasted from y (clamped to the image range, as the output is)
    observed = op.forward(restored["psld"] * 2 - 1)
    assert torch.allclose(observed, op.forward(measurement.clamp(0, 1) * 2 - 1), atol=1e-6)


#: measured gains (see docs/results.md) minus a safety margin; a prior that fills nothing fails
MARGIN_DB = {"inpaint-box": 2.0, "inpaint-random": 3.0}


@pytest.mark.parametrize("task", ["sr4", "deblur-gaussian"])
def test_residual_within_bound_and_seed_stable(model, truth, task):
    """At the preset, ||y - A x|| / ||y|| < RESIDUAL_BOUND on every image (measured on 8 images: at most
    0.24 for sr4, 0.43 for deblurring; the noise alone is 0.06-0.09); the unguided prior breaks it."""
    from psld.demo import restore_set

    a, measurement, op = restore_set(model, truth[:4], task, ("psld",), seed=3)
    b, _, _ = restore_set(model, truth[:4], task, ("psld",), seed=3)
    assert torch.equal(a["psld"], b["psld"])  # same seed, same result

    def rel(x):
        y = measurement * 2 - 1
        return (y - op.forward(x * 2 - 1)).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)

    assert torch.all(rel(a["psld"]) < RESIDUAL_BOUND), rel(a["psld"])
    unguided = psld.solve(
        truth[:4],
        task,
        model=model,
        simulate=True,
        seed=3,
        output_type="pt",
        progress=False,
        config=model_preset(model, task, "ldps").replace(omega=0.0),
    )
    assert torch.equal(unguided.measurement, measurement)
    assert float(rel(unguided.images).mean()) > RESIDUAL_BOUND


#: relative residual bound at the preset for the tasks without pasting
RESIDUAL_BOUND = 0.5


def test_every_method_sees_the_same_measurement(model, truth):
    cfg = model_preset(model, "inpaint-random", "ldps").replace(num_steps=1)
    outs = [
        psld.solve(
            truth[:2],
            "inpaint-random",
            model=model,
            simulate=True,
            seed=5,
            output_type="pt",
            config=cfg.replace(method=m),
            progress=False,
        )
        for m in ("ldps", "psld", "gml")
    ]
    assert all(torch.equal(outs[0].measurement, o.measurement) for o in outs[1:])
    other = psld.solve(
        truth[:2],
        "inpaint-random",
        model=model,
        simulate=True,
        seed=6,
        output_type="pt",
        config=cfg,
        progress=False,
    )
    assert not torch.equal(outs[0].measurement, other.measurement)


def test_demo_writes_table_and_figure(tmp_path, capsys):
    from psld.cli import main

    assert main(["demo", "--out", str(tmp_path / "d"), "--n", "1", "--steps", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for name in ("sr4", "inpaint-box", "inpaint-random", "deblur-gaussian", "psld", "gml", "ldps", "pinv"):
        assert name in out
    assert (tmp_path / "d" / "comparison.png").stat().st_size > 1000
    assert main(["demo", "--out", str(tmp_path / "e"), "--n", "33"]) == 2  # only 32 images ship


def test_evaluate_takes_the_model_presets_and_the_shipped_images():
    """psld evaluate resolves the built-in name without loading it, and starts from its tuned presets."""
    from psld.evaluation.datasets import resolve_images
    from psld.evaluation.methods import sampler_config
    from psld.evaluation.modelinfo import model_info

    info = model_info("fashion-mnist")
    tuned = json.loads((BUILTIN_MODELS["fashion-mnist"] / "psld_presets.json").read_text())
    cfg = sampler_config("psld", "inpaint-box", info, preset="improved", steps=None, omega=None, gamma=None)
    assert (cfg.omega, cfg.gamma, cfg.num_steps) == (
        tuned["inpaint-box"]["omega"],
        tuned["inpaint-box"]["gamma"],
        tuned["inpaint-box"]["num_steps"],
    )
    assert cfg.omega != psld.PSLDConfig.preset("inpaint-box", "ldm").omega  # the tuning changed it
    assert [s.name for s in resolve_images("fashion-mnist-test")] == [f"{i:05d}" for i in TEST_INDICES]


def test_pinv_alone_sees_the_measurement_the_samplers_see(model, truth):
    from psld.demo import restore_set

    alone, y_alone, _ = restore_set(model, truth[:2], "inpaint-random", ("pinv",), seed=7)
    both, y_both, _ = restore_set(model, truth[:2], "inpaint-random", ("ldps", "pinv"), seed=7, steps=1)
    assert torch.equal(y_alone, y_both) and torch.equal(alone["pinv"], both["pinv"])
