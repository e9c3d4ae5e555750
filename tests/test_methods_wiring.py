"""The registry's methods through the user-facing paths: ``psld.solve(method=...)``, ``psld restore
--method`` and ``psld evaluate --methods``, on the tiny random models (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import psld
from psld.cli import main
from psld.methods import REGISTRY, method_config

H = W = 24


def _image(seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W] / (H - 1)
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(3 * xx + seed), yy, np.cos(2 * xx * yy)], -1) * 0.4 + 0.5
    return np.clip(base + 0.05 * rng.standard_normal((H, W, 3)), 0, 1).astype(np.float32)


#: small settings so a tiny-model run takes about a second; every method's hooks still run
SMALL = {
    "resample": dict(num_steps=4, every=1, splits=2, pixel_iters=2, latent_iters=2),
    "mpgd": dict(num_steps=4),
    "stsl": dict(num_steps=3, inner_steps=1),
    "daps": dict(num_steps=3, langevin_steps=2, lr=1e-5),
    "diffpir": dict(num_steps=4),
}


@pytest.mark.parametrize("method", list(REGISTRY))
def test_solve_runs_each_method_with_its_config_type(method, tiny_sd):
    cfg = method_config(method, **SMALL[method])
    out = psld.solve(
        _image(), "sr2", model=tiny_sd, simulate=True, seed=0, config=cfg, output_type="pt", progress=False
    )
    assert type(out.config) is REGISTRY[method] and out.config.method == method
    assert out.images.shape == (1, 3, H, W) and torch.isfinite(out.images).all()
    assert out.losses["measurement"].shape[1] == 1


def test_solve_method_argument_uses_the_method_defaults_and_model_schedule(tiny_sd):
    out = psld.solve(
        _image(),
        "inpaint-random",
        model=tiny_sd,
        simulate=True,
        seed=0,
        method="diffpir",
        num_inference_steps=3,
        sigma_y=0.05,
        output_type="np",
        progress=False,
    )
    cfg = out.config
    assert cfg.method == "diffpir" and cfg.num_steps == 3 and cfg.zeta == REGISTRY["diffpir"]().zeta
    assert cfg.sigma_n == pytest.approx(0.1)  # 2 * sigma_y: [-1, 1] units
    assert cfg.steps_offset == tiny_sd.scheduler_settings()["steps_offset"]
    assert out.images.shape == (1, H, W, 3) and out.images.dtype == np.float32
    pil = psld.solve(
        _image(),
        "sr2",
        model=tiny_sd,
        simulate=True,
        seed=0,
        method="mpgd",
        num_inference_steps=2,
        progress=False,
    )
    assert isinstance(pil.images[0], Image.Image)


def test_solve_batch_equals_singles_for_a_hook_method(tiny_sd):
    """float32 UNet: agreement to the tolerance of the core's own test (tests/test_solve.py); exact
    agreement in float64 for every method is tests/test_methods.py."""
    cfg = method_config("mpgd", **SMALL["mpgd"])
    imgs = [_image(0), _image(1)]
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    both = psld.solve(
        imgs,
        "sr2",
        model=tiny_sd,
        simulate=True,
        config=cfg,
        generator=gens,
        output_type="pt",
        progress=False,
        paste=False,
    )
    for i in range(2):
        one = psld.solve(
            imgs[i],
            "sr2",
            model=tiny_sd,
            simulate=True,
            config=cfg,
            generator=[torch.Generator().manual_seed(3 + i)],
            output_type="pt",
            progress=False,
            paste=False,
        )
        assert torch.allclose(both.images[i], one.images[0], atol=1e-4), f"image {i}"


def test_solve_rejects_unknown_or_conflicting_methods(tiny_sd):
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        psld.solve(_image(), "sr2", model=tiny_sd, simulate=True, method="nope", progress=False)
    with pytest.raises(ValueError, match="disagrees with config.method"):
        psld.solve(
            _image(),
            "sr2",
            model=tiny_sd,
            simulate=True,
            method="mpgd",
            config=method_config("daps"),
            progress=False,
        )


def test_cli_restore_method(tiny_sd_path, tmp_path, capsys):
    img = tmp_path / "img.png"
    Image.fromarray((_image() * 255).round().astype(np.uint8)).save(img)
    out = tmp_path / "out"
    args = [
        "restore",
        str(img),
        "-t",
        "sr2",
        "--model",
        str(tiny_sd_path),
        "--simulate",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "-o",
        str(out),
    ]
    assert main([*args, "--method", "mpgd"]) == 0
    assert Image.open(out / "img_sr2.png").size == (W, H)
    assert main([*args, "--method", "nope", "--overwrite"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_evaluate_methods_include_the_registry(tiny_ldm_path, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray((_image() * 255).round().astype(np.uint8)).save(images / "a.png")
    result = psld.evaluate(
        str(images),
        ["sr2"],
        model=str(tiny_ldm_path),
        size=24,
        steps=2,
        seed=1,
        methods="ldps,mpgd,diffpir",
        out=str(tmp_path / "out"),
        progress=False,
    )
    rows = {r["method"]: r for r in result.rows}
    assert set(rows) == {"ldps", "mpgd", "diffpir"}
    assert all(np.isfinite(rows[m]["psnr"]) for m in rows)


def test_model_presets_give_a_registry_method_only_its_own_tuned_fields():
    from psld.presets import model_preset

    class Model:
        family = "sd"
        presets = {"sr2": {"omega": 9.0, "mpgd": {"omega": 0.3, "num_steps": 7}}}

        def scheduler_settings(self):
            return {"steps_offset": 1, "set_alpha_to_one": False, "timestep_spacing": "trailing"}

    mpgd = model_preset(Model(), "sr2", "mpgd")
    assert type(mpgd) is REGISTRY["mpgd"] and (mpgd.omega, mpgd.num_steps) == (0.3, 7)
    assert (mpgd.steps_offset, mpgd.timestep_spacing) == (1, "trailing")
    daps = model_preset(Model(), "sr2", "daps")
    assert daps.omega == REGISTRY["daps"]().omega  # PSLD's tuned omega does not leak into another method
    assert model_preset(Model(), "sr2").omega == 9.0
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        model_preset(Model(), "sr2", "nope")
