"""Step counts up to the model's training timesteps run on SD-style schedulers (`steps_offset=1`), and
out-of-range counts are refused before loading, in the user's names (`--steps`, `num_inference_steps`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

import psld
from psld.cli import main
from psld.restore import _config
from psld.sampler import schedule_for
from psld.tasks import get_task


def _diffusers_timesteps(model, steps: int) -> list[int]:
    sched = DDIMScheduler(
        beta_schedule="scaled_linear", steps_offset=model.steps_offset, timestep_spacing="leading"
    )
    sched.set_timesteps(steps)
    return sched.timesteps.tolist()


def test_tiny_sd_is_sd_like(tiny_sd):
    assert tiny_sd.steps_offset == 1 and tiny_sd.timestep_spacing == "leading"
    assert tiny_sd.num_train_timesteps == 1000


def test_1000_steps_visit_every_timestep_once(tiny_sd):
    cfg = _config(get_task("sr2"), tiny_sd, None, 1000, None, None)
    sched, seen = schedule_for(cfg, tiny_sd.prior.alphas_cumprod)
    assert seen.tolist() == list(range(999, -1, -1))
    assert cfg.steps_offset == 0


@pytest.mark.parametrize("steps", [1, 7, 200, 500, 999])
def test_counts_that_fit_keep_diffusers_timesteps(tiny_sd, steps):
    cfg = _config(get_task("sr2"), tiny_sd, None, steps, None, None)
    _, seen = schedule_for(cfg, tiny_sd.prior.alphas_cumprod)
    if steps == 999:  # T // 999 = 1: diffusers' first timestep 998 + 1 = 999 still fits
        assert seen[0] == 999
    assert seen.tolist() == _diffusers_timesteps(tiny_sd, steps)


def test_solve_runs_1000_steps(tiny_sd):
    img = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32)
    out = psld.solve(img, "denoise", model=tiny_sd, num_inference_steps=1000, omega=0.0, gamma=0.0,
                     progress=False, output_type="pt")  # fmt: skip
    assert out.losses["measurement"].shape[0] == 1000 and bool(torch.isfinite(out.images).all())


@pytest.mark.parametrize("steps", [0, 1001, 100000])
def test_solve_names_num_inference_steps(tiny_sd, steps):
    with pytest.raises(ValueError, match=r"^num_inference_steps must be an integer from 1 to 1000") as info:
        psld.solve(np.zeros((8, 8, 3)), "sr2", model=tiny_sd, num_inference_steps=steps, progress=False)
    assert "num_steps" not in str(info.value) and "steps_offset" not in str(info.value)


@pytest.mark.parametrize("steps", ["1001", "100000"])
def test_command_refuses_before_loading(tiny_sd_path, tmp_path, capsys, monkeypatch, steps):
    import psld.models.loading as loading

    def no_load(*a, **k):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(loading, "load_model", no_load)
    img = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    argv = ["restore", str(img), "-t", "sr2", "--model", str(tiny_sd_path), "--steps", steps]
    assert main([*argv, "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0] == (
        f"psld: error: --steps must be an integer from 1 to 1000, got {steps} "
        "(the model has 1000 training timesteps)"
    )
