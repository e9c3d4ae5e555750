"""Inputs that used to be accepted silently are refused with one line (issue 17, bug 16): a gray or
coloured mask, a transparent image, ``--sigma-y`` without ``--simulate``, a kernel larger than the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import psld
from psld.cli import main
from psld.images import load_images, load_mask

H, W = 16, 16


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("refusal-inputs")
    rgb = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(d / "img.png")
    alpha = np.full((H, W, 1), 255, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], -1)).save(d / "opaque.png")
    alpha[3, 4] = 0
    Image.fromarray(np.concatenate([rgb, alpha], -1)).save(d / "transparent.png")
    mask = np.full((H, W), 255, np.uint8)
    mask[4:10, 4:10] = 0
    Image.fromarray(mask).save(d / "mask.png")
    gray = mask.copy()
    gray[0, 0] = 128
    Image.fromarray(gray).save(d / "gray.png")
    near = mask.copy()
    near[mask == 0] = 12  # near black, as a lossy save leaves it: still "missing"
    near[0, :] = 243  # near white: observed
    Image.fromarray(near).save(d / "near.png")
    colour = np.stack([mask, mask, mask], -1)
    colour[4:10, 4:10] = (255, 0, 0)  # a red box
    Image.fromarray(colour).save(d / "colour.png")
    np.save(d / "big_kernel.npy", np.ones((17, 5)) / 85)
    return d


# ------------------------------------------------------------------------------------- the library
def test_gray_mask_refused(files):
    with pytest.raises(ValueError, match=r"gray pixels \(e.g. 0.502 of full scale at \[0, 0\]\)"):
        load_mask(files / "gray.png")
    with pytest.raises(ValueError, match="gray"):
        load_mask(np.full((4, 4), 0.5))


def test_near_black_and_white_levels_accepted(files):
    near, exact = load_mask(files / "near.png"), load_mask(files / "mask.png")
    assert torch.equal(near, exact)


def test_coloured_mask_refused(files):
    with pytest.raises(ValueError, match="coloured"):
        load_mask(files / "colour.png")
    with pytest.raises(ValueError, match="coloured"):
        load_mask(np.asarray(Image.open(files / "colour.png")))


def test_gray_rgb_mask_accepted(files):
    rgb = np.repeat(np.asarray(Image.open(files / "mask.png"))[..., None], 3, -1)
    assert torch.equal(load_mask(rgb), load_mask(files / "mask.png"))


def test_transparent_image_refused_opaque_alpha_dropped(files):
    with pytest.raises(ValueError, match="transparent pixels"):
        load_images(files / "transparent.png")
    with pytest.raises(ValueError, match="transparent pixels"):
        load_images(np.asarray(Image.open(files / "transparent.png")))
    assert torch.equal(load_images(files / "opaque.png"), load_images(files / "img.png"))


def test_solve_refuses_sigma_y_in_real_use(tiny_sd, files):
    with pytest.raises(ValueError, match="sigma_y applies only with simulate=True"):
        psld.solve(
            files / "img.png", "sr2", model=tiny_sd, sigma_y=0.1, num_inference_steps=2, progress=False
        )


def test_solve_refuses_a_kernel_larger_than_the_image(tiny_sd, files):
    with pytest.raises(ValueError, match=r"kernel must be no larger than the image \(16x16\), got <17x5"):
        psld.solve(
            files / "img.png",
            "deblur-gaussian",
            model=tiny_sd,
            kernel=files / "big_kernel.npy",
            num_inference_steps=2,
            progress=False,
        )


# ------------------------------------------------------------------------------------- the command
@pytest.mark.parametrize(
    "source, extra, match",
    [
        ("img", ["-t", "inpaint-box", "--mask", "{d}/gray.png"], "gray pixels"),
        ("img", ["-t", "inpaint-box", "--mask", "{d}/colour.png"], "coloured"),
        ("img", ["-t", "sr2", "--sigma-y", "0.05"], "--sigma-y applies only with --simulate"),
        ("img", ["-t", "deblur-gaussian", "--kernel", "{d}/big_kernel.npy"], "--kernel must be no larger"),
        ("transparent", ["-t", "sr2"], "transparent pixels"),
    ],
)
def test_command_refuses_before_loading(files, tmp_path, capsys, source, extra, match):
    argv = ["restore", str(files / f"{source}.png"), *[e.format(d=files) for e in extra]]
    argv += ["--model", str(tmp_path / "no-such-model"), "-o", str(tmp_path / "o")]
    assert main(argv) == 2  # the model does not exist: a check after loading would report it instead
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("psld: error: ") and match in err[0], err
    assert not (tmp_path / "o").exists()
