"""psld train: the loop learns, resumes exactly, writes a loadable folder; bad input is one line, exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from psld.training import TrainConfig, train
from psld.training.loop import draw_batch, learning_rate


def _tiny_autoencoder(folder):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    ).save_pretrained(folder)
    return folder


def _image_folder(folder, n=6, size=16):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for i in range(n):  # near-identical images: a prior that a few dozen steps can learn
        noise = rng.integers(0, 3, (size, size, 3), dtype=np.uint8)
        Image.fromarray(base + noise).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return _image_folder(root / "images"), _tiny_autoencoder(root / "ae")


CFG = TrainConfig(
    size=16,
    steps=24,
    batch_size=8,
    learning_rate=3e-3,
    warmup_steps=2,
    ema_decay=0.9,
    block_out_channels=(8, 16),
    checkpoint_every=4,
    max_images=None,
)


def test_learning_rate_schedule_literal_values():
    cfg = TrainConfig(steps=110, warmup_steps=10, learning_rate=1.0)
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 9) == pytest.approx(1.0)
    assert learning_rate(cfg, 60) == pytest.approx(0.5)  # half-way through the cosine
    assert learning_rate(cfg, 110) == pytest.approx(0.0)


def test_batches_depend_on_seed_and_step_only():
    a = draw_batch(0, 5, 100, 8, (4, 2, 2))
    b = draw_batch(0, 5, 100, 8, (4, 2, 2))
    c = draw_batch(0, 6, 100, 8, (4, 2, 2))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[2], c[2])


def _eval_loss(unet, latents, scaling):
    """Mean epsilon-prediction loss on 4 fixed batches (seed 123), no gradient."""
    from diffusers import DDPMScheduler

    from psld.training.config import scheduler_config

    abar = DDPMScheduler(**scheduler_config()).alphas_cumprod
    z0 = latents * scaling
    total = 0.0
    with torch.no_grad():
        for step in range(4):
            idx, t, noise = draw_batch(123, step, len(z0), 32, tuple(z0.shape[1:]))
            a = abar[t].view(-1, 1, 1, 1)
            pred = unet(a.sqrt() * z0[idx] + (1 - a).sqrt() * noise, t).sample
            total += float((pred - noise).pow(2).mean()) / 4
    return total


def test_loss_falls_and_folder_loads(assets, tmp_path):
    from diffusers import UNet2DModel

    import psld
    from psld.training.loop import build_unet

    images, ae = assets
    cfg = TrainConfig(**{**CFG.to_dict(), "steps": 100, "learning_rate": 1e-2, "batch_size": 16})
    result = train(images, ae, tmp_path / "m", config=cfg, progress=False)
    latents = torch.load(next((tmp_path / "m" / "cache").glob("latents-*.pt"))).float()
    torch.manual_seed(cfg.seed)
    untrained = _eval_loss(build_unet(cfg, 4, 2), latents, result.scaling_factor)
    trained = _eval_loss(UNet2DModel.from_pretrained(tmp_path / "m" / "unet"), latents, result.scaling_factor)
    assert untrained > 0.8  # ||eps_theta - eps||^2 of order 1 before training
    assert trained < 0.7 * untrained, (trained, untrained)
    model = psld.load_model(tmp_path / "m", device="cpu")
    assert model.family == "ldm" and model.latent_channels == 4
    # the stored scaling factor is 1 / std of the autoencoder's latents of the training images
    from diffusers import AutoencoderTiny

    from psld.images import load_images

    vae = AutoencoderTiny.from_pretrained(ae)
    x = load_images(sorted(str(p) for p in images.iterdir())) * 2 - 1
    with torch.no_grad():
        std = vae.encode(x).latents.half().double().std()
    vae_config = json.loads((tmp_path / "m" / "vae" / "config.json").read_text())
    assert vae_config["scaling_factor"] == pytest.approx(float(1 / std), rel=1e-6)
    # no key the class does not take: diffusers would warn about it on every load
    assert _unaccepted_keys(AutoencoderTiny, vae_config) == set()
    card = (tmp_path / "m" / "README.md").read_text()
    assert "Final loss" in card and (tmp_path / "m" / "samples.png").is_file()


def _unaccepted_keys(cls, config: dict) -> set[str]:
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters)
    return {k for k in config if not k.startswith("_") and k not in accepted}


def test_shipped_autoencoder_config_loads_without_unknown_keys():
    from diffusers import AutoencoderTiny

    shipped = Path(__file__).resolve().parents[1] / "psld" / "models" / "builtin" / "fashion-mnist"
    config = json.loads((shipped / "vae" / "config.json").read_text())
    assert config["_class_name"] == "AutoencoderTiny"
    assert _unaccepted_keys(AutoencoderTiny, config) == set()
    # the probe can fail: diffusers' own saved config carries the alias the loader rejects
    assert _unaccepted_keys(AutoencoderTiny, AutoencoderTiny().config) == {"block_out_channels"}


def _same_checkpoints(a_dir, b_dir):
    a = torch.load(a_dir / "checkpoint" / "checkpoint.pt", weights_only=False)
    b = torch.load(b_dir / "checkpoint" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == CFG.steps
    for key in a["unet"]:
        assert torch.equal(a["unet"][key], b["unet"][key]), key
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert a["losses"] == b["losses"]


@pytest.fixture(scope="module")
def straight(assets, tmp_path_factory):
    images, ae = assets
    out = tmp_path_factory.mktemp("straight") / "m"
    train(images, ae, out, config=CFG, progress=False)
    return out


def test_resume_after_a_stop_equals_an_uninterrupted_run(assets, straight, tmp_path):
    images, ae = assets
    train(images, ae, tmp_path / "m", config=CFG, progress=False, stop_after=10)
    assert not (tmp_path / "m" / "model_index.json").exists()
    resumed = train(images, ae, tmp_path / "m", config=CFG, progress=False, resume=True)
    assert resumed.resumed_from == 10
    _same_checkpoints(straight, tmp_path / "m")


def test_resume_after_a_kill_restarts_from_the_last_checkpoint(assets, straight, tmp_path, monkeypatch):
    import psld.training.loop as loop

    images, ae = assets
    real = loop.draw_batch

    def killed_at_step_10(seed, step, *args):
        if step == 10:
            raise KeyboardInterrupt
        return real(seed, step, *args)

    monkeypatch.setattr(loop, "draw_batch", killed_at_step_10)
    with pytest.raises(KeyboardInterrupt):
        train(images, ae, tmp_path / "m", config=CFG, progress=False)
    monkeypatch.setattr(loop, "draw_batch", real)
    resumed = train(images, ae, tmp_path / "m", config=CFG, progress=False, resume=True)
    assert resumed.resumed_from == 8  # checkpoints every 4 steps: steps 8-9 are computed again
    _same_checkpoints(straight, tmp_path / "m")


def test_resume_refuses_other_settings(assets, tmp_path):
    images, ae = assets
    train(images, ae, tmp_path / "m", config=CFG, progress=False, stop_after=4)
    other = TrainConfig(**{**CFG.to_dict(), "learning_rate": 1e-4})
    with pytest.raises(ValueError, match="other settings"):
        train(images, ae, tmp_path / "m", config=other, progress=False, resume=True)


def test_config_round_trips_to_json():
    cfg = TrainConfig(block_out_channels=(16, 32), bf16=True, max_images=10)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize(
    "changes",
    [
        {"learning_rate": math.nan},
        {"learning_rate": math.inf},
        {"ema_decay": 1.0},
        {"size": 12},
        {"steps": 0},
        {"block_out_channels": (12,)},
    ],
)
def test_bad_settings_are_refused(changes):
    with pytest.raises(ValueError):
        TrainConfig(**changes)


def _cli(*argv):
    from psld.cli import main

    return main(["train", *map(str, argv)])


def test_cli_bad_inputs_one_line_exit_2(assets, tmp_path, capsys):
    images, ae = assets
    empty = tmp_path / "empty"
    empty.mkdir()
    readonly_parent = tmp_path / "file"
    readonly_parent.write_text("x")
    cases = [
        ((("--data", empty, "--autoencoder", ae, "-o", tmp_path / "o1")), "holds no images"),
        ((("--data", images, "--autoencoder", images, "-o", tmp_path / "o2")), "neither a diffusers config"),
        ((("--data", images, "--autoencoder", ae, "-o", readonly_parent / "sub")), "is a file"),
        ((("--data", images, "--autoencoder", ae, "-o", tmp_path / "o3", "--lr", "nan")), "learning_rate"),
        ((("--data", tmp_path / "missing", "--autoencoder", ae, "-o", tmp_path / "o4")), "does not exist"),
    ]
    for argv, message in cases:
        assert _cli(*argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))  # nothing written


def test_two_processes_compute_the_one_process_update(assets, tmp_path):
    """accelerate launch with 2 CPU processes (gloo): each takes rows rank::2 of the same batch and the
    gradients are averaged, so the weights equal the one-process run's up to summation order."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    images, ae = assets
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    launch = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port),
    ]
    args = [
        "-m",
        "psld",
        "train",
        "--data",
        str(images),
        "--autoencoder",
        str(ae),
        "-o",
        str(tmp_path / "m"),
        "--size",
        "16",
        "--steps",
        "4",
        "--batch-size",
        str(CFG.batch_size),
        "--lr",
        str(CFG.learning_rate),
        "--warmup",
        str(CFG.warmup_steps),
        "--ema-decay",
        str(CFG.ema_decay),
        "--channels",
        "8,16",
        "--checkpoint-every",
        str(CFG.checkpoint_every),
        "--no-progress",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    proc = subprocess.run([*launch, *args], env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    short = TrainConfig(**{**CFG.to_dict(), "steps": 4})
    train(images, ae, tmp_path / "one", config=short, progress=False)
    a = torch.load(tmp_path / "one" / "checkpoint" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "m" / "checkpoint" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    # the mean loss over the run: the full batch's on both (a process training on its half alone differs
    # at the first step already by ~10%); agreement to round-off amplified by Adam (below)
    assert b["window"] == pytest.approx(a["window"], rel=1e-4)
    # Adam's first steps are sign-like (g / (|g| + eps)): summation-order round-off in near-zero gradient
    # entries can flip a step of size lr, so the weights agree to a few lr, not to round-off
    for key, value in a["unet"].items():
        torch.testing.assert_close(b["unet"][key], value, rtol=0, atol=10 * CFG.learning_rate)
    assert (tmp_path / "m" / "model_index.json").is_file()
