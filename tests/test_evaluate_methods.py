"""``psld evaluate``'s methods and metrics on their own: the residual against a hand computation,
one measurement shared by every method of an (image, task), and the model loaded on the main process
first under accelerate."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from PIL import Image

import psld
import psld.evaluation.loop as loop
import psld.evaluation.metrics as metrics
import psld.restore
from psld.evaluation.metrics import residual
from psld.operators import MaskOperator


def test_residual_is_the_relative_norm_in_minus_one_one_units_by_hand():
    """x01 = 0.75 everywhere -> x = 2 x01 - 1 = 0.5; y = 2 on the 24 observed values (2 rows x 4 x 3).

    ||y - A x|| / ||y|| = sqrt(24 * 1.5^2) / sqrt(24 * 2^2) = 1.5 / 2 = 0.75 (||y|| = 2 sqrt(24), not 1).
    The squared ratio (0.5625), the unnormalised norm (4.24) or [0, 1] units (||2 - 0.75|| / 2 = 0.625)
    would all differ.
    """
    mask = torch.zeros(4, 4)
    mask[:2, :] = 1  # one mask for the 3 channels
    op = MaskOperator(mask, (3, 4, 4))
    x01 = torch.full((1, 3, 4, 4), 0.75)
    y = op.forward(torch.full((1, 3, 4, 4), 2.0))
    n_obs = int((y != 0).sum())
    assert n_obs == 24 and abs(float(torch.linalg.vector_norm(y)) - 2 * 24**0.5) < 1e-5
    assert residual(op, x01, y) == pytest.approx(0.75, rel=1e-6)
    assert residual(op, torch.full((1, 3, 4, 4), 1.0), y) == pytest.approx(0.5, rel=1e-6)  # x = 1: 1/2


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name in ("m", "n"):
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


def test_every_method_of_a_unit_sees_the_y_that_pinv_and_the_residual_used(
    images, tiny_ldm_path, monkeypatch
):
    seen: dict[str, list] = {"loop": [], "sampler": [], "residual": []}
    real_run, real_sample, real_residual = loop.run_method, psld.restore.sample, metrics.residual

    def run_method(method, op, x01, y, *args, **kwargs):
        seen["loop"].append((method, y.clone()))
        return real_run(method, op, x01, y, *args, **kwargs)

    def sample(prior, encoder, decoder, op, y, **kwargs):
        seen["sampler"].append(y.clone())
        return real_sample(prior, encoder, decoder, op, y, **kwargs)

    def record_residual(op, result, y):
        seen["residual"].append(y.clone())
        return real_residual(op, result, y)

    monkeypatch.setattr(loop, "run_method", run_method)
    monkeypatch.setattr(psld.restore, "sample", sample)
    monkeypatch.setattr(metrics, "residual", record_residual)
    psld.evaluate(
        str(images), ["sr4", "inpaint-random"], model=str(tiny_ldm_path), methods="psld,ldps,pinv",
        size=16, steps=1, progress=False,
    )  # fmt: skip
    assert [m for m, _ in seen["loop"]] == ["psld", "ldps", "pinv"] * 4
    assert len(seen["sampler"]) == 8 and len(seen["residual"]) == 12
    sampler = iter(seen["sampler"])
    for unit in range(4):
        ys = [y for _, y in seen["loop"][3 * unit : 3 * unit + 3]]
        ys += [next(sampler), next(sampler)] + seen["residual"][3 * unit : 3 * unit + 3]
        assert all(torch.equal(y, ys[0]) for y in ys), f"unit {unit}: the methods saw different y"
    first, second = seen["loop"][0][1], seen["loop"][6][1]  # (m, sr4) and (n, sr4): other images
    assert first.shape == second.shape and not torch.equal(first, second)


class _State:
    """accelerate's PartialState as load_models uses it, recording the order of events."""

    def __init__(self, events: list):
        self.events, self.device = events, torch.device("cpu")

    @contextlib.contextmanager
    def main_process_first(self):
        self.events.append("main first: enter")
        yield
        self.events.append("main first: exit")


def test_models_load_on_the_main_process_first(images, tiny_ldm_path, monkeypatch):
    from psld.evaluation.checks import check_inputs
    from psld.evaluation.runner import load_models

    events: list[str] = []
    real = psld.models.loading.load_model

    def load(source, **kwargs):
        events.append(f"load {source}")
        return real(source, **kwargs)

    monkeypatch.setattr(psld.models.loading, "load_model", load)
    c = check_inputs(
        str(images), "sr4", model=str(tiny_ldm_path), methods="psld,pinv", pixel_model=None, out=None,
        size=16, resize="crop", steps=1, seed=0, preset="improved", omega=None, gamma=None, sigma_y=0.025,
        sr_mode="bicubic", device=None, dtype=None,
    )  # fmt: skip
    models = load_models(c, _State(events))
    assert events == ["main first: enter", f"load {tiny_ldm_path.absolute()}", "main first: exit"]
    assert models["latent"].device == torch.device("cpu")  # the state's device when none is given


def test_psnr_and_ssim_against_hand_values():
    """A uniform error of 0.1 on [0, 1] images: MSE 0.01, PSNR = 10 log10(1 / 0.01) = 20 dB exactly;
    SSIM of an image with itself is 1 and drops for a noisy copy."""
    truth = np.random.default_rng(0).uniform(0.2, 0.8, (16, 16, 3))
    assert metrics.psnr(truth + 0.1, truth) == pytest.approx(20.0, abs=1e-9)
    assert metrics.psnr(truth + 0.01, truth) == pytest.approx(40.0, abs=1e-9)
    assert metrics.ssim(truth, truth) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(truth + np.random.default_rng(1).normal(0, 0.1, truth.shape), 0, 1)
    assert metrics.ssim(noisy, truth) < 0.9


def test_model_info_read_from_config_files_matches_the_loaded_model(
    tiny_sd_path, tiny_sd, tiny_ldm_path, tiny_ldm, tmp_path
):
    """Two code paths: the config files (before loading) and the LatentModel (after): same facts."""
    from tiny_models import build_tiny_pixel

    from psld.evaluation.modelinfo import model_info

    pixel_path = build_tiny_pixel(tmp_path / "pixel")
    pixel = psld.load_model(pixel_path, device="cpu")
    for path, model, family in (
        (tiny_sd_path, tiny_sd, "sd"),
        (tiny_ldm_path, tiny_ldm, "ldm"),
        (pixel_path, pixel, "pixel"),
    ):
        from_files, loaded = model_info(str(path)), model_info(model)
        assert from_files == loaded and loaded.family == family
        assert loaded.size_multiple == model.size_multiple and loaded.num_train_timesteps == 1000
    assert model_info(str(tmp_path / "missing")) is None


def test_a_scheduler_spacing_diffusers_does_not_name_reads_as_leading_like_the_loader(
    tiny_ldm_path, tmp_path
):
    import json
    import shutil

    from psld.evaluation.modelinfo import model_info

    model = tmp_path / "odd-spacing"
    shutil.copytree(tiny_ldm_path, model)
    sched = model / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "timestep_spacing": "sideways"}))
    loaded = psld.load_model(model, device="cpu")
    assert model_info(str(model)) == model_info(loaded) and loaded.timestep_spacing == "leading"
