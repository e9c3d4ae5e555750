"""The ``psld`` command: end to end through the console script, and every bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.transform import resize

from psld.cli import main
from psld.tasks import TASKS

H, W = 29, 37
PSLD = Path(sys.executable).with_name("psld")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-inputs")
    img = (resize(data.astronaut(), (H, W), anti_aliasing=True) * 255).round().astype(np.uint8)
    Image.fromarray(img).save(d / "astro.png")
    mask = np.full((H, W), 255, np.uint8)
    mask[6:20, 10:28] = 0
    Image.fromarray(mask).save(d / "mask.png")
    Image.fromarray(mask[:20]).save(d / "mask_small.png")
    (d / "notes.png").write_text("this is not an image")
    k = np.zeros((5, 5))
    k[2] = 0.2
    np.save(d / "kernel.npy", k)
    return d


def _run_console(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(PSLD), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_console_script_restores_and_writes_two_pngs(files, tiny_sd_path, tmp_path):
    assert PSLD.exists(), "run `pip install -e .` to create the psld console script"
    out = tmp_path / "result"
    proc = _run_console(
        "restore",
        str(files / "astro.png"),
        "-t",
        "inpaint-box",
        "--model",
        str(tiny_sd_path),
        "--mask",
        str(files / "mask.png"),
        "-o",
        str(out),
        "--steps",
        "2",
        "--seed",
        "1",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    restored, compare = out / "astro_inpaint-box.png", out / "astro_inpaint-box_compare.png"
    assert sorted(p.name for p in out.iterdir()) == sorted([restored.name, compare.name])
    assert Image.open(restored).size == (W, H)
    assert Image.open(compare).size == (3 * W + 2 * 4, H)  # input | measurement | result
    assert "sampling" in proc.stderr  # the progress bar
    # the observed pixels are the input's (paste from the measurement)
    observed = np.asarray(Image.open(files / "mask.png")) > 127
    got, src = np.asarray(Image.open(restored)), np.asarray(Image.open(files / "astro.png"))
    assert np.abs(got[observed].astype(int) - src[observed].astype(int)).max() <= 1


def test_console_script_bad_input_one_line(files, tmp_path):
    out = tmp_path / "never"
    proc = _run_console(
        "restore",
        str(files / "missing.png"),
        "-t",
        "sr4",
        "--model",
        str(tmp_path),
        "-o",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("psld: error: ") and "missing.png" in lines[0]
    assert not out.exists()


def _bad_cases(files: Path, sd: Path) -> dict[str, tuple[list[str], str]]:
    img, model = str(files / "astro.png"), str(sd)
    return {
        "missing file": ([str(files / "nope.png"), "-t", "sr4", "--model", model], "does not exist"),
        "not an image": ([str(files / "notes.png"), "-t", "sr4", "--model", model], "not an image"),
        "mask wrong size": (
            [img, "-t", "inpaint-box", "--model", model, "--mask", str(files / "mask_small.png")],
            "does not match the image size",
        ),
        "mask not an image": (
            [img, "-t", "inpaint-box", "--model", model, "--mask", str(files / "notes.png")],
            "not an image",
        ),
        "mask missing": ([img, "-t", "inpaint-random", "--model", model], "needs --mask"),
        "mask for sr": (
            [img, "-t", "sr2", "--model", model, "--mask", str(files / "mask.png")],
            "takes no --mask",
        ),
        "unknown task": ([img, "-t", "sr3", "--model", model], "unknown task 'sr3'; known tasks:"),
        "missing model folder": ([img, "-t", "sr4", "--model", str(files / "no-model")], "does not exist"),
        "not a model folder": ([img, "-t", "sr4", "--model", str(files)], "not a diffusers model folder"),
        "kernel missing": ([img, "-t", "deblur-motion", "--model", model], "needs --kernel"),
        "kernel not npy": (
            [img, "-t", "deblur-gaussian", "--model", model, "--kernel", str(files / "notes.png")],
            "not a numpy",
        ),
        "bad steps": ([img, "-t", "sr4", "--model", model, "--steps", "0"], "--steps"),
        "bad dtype": ([img, "-t", "sr4", "--model", model, "--dtype", "int3"], "dtype"),
        "no model": ([img, "-t", "sr4"], "--model"),
    }


@pytest.mark.parametrize("case", list(_bad_cases(Path("."), Path("."))))
def test_bad_input_exits_2_with_one_line(case, files, tiny_sd_path, tmp_path, capsys):
    argv, match = _bad_cases(files, tiny_sd_path)[case]
    out = tmp_path / "out"
    assert main(["restore", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("psld: error: ") and match in err[0], err[0]
    assert not out.exists()


def test_simulate_sr_in_process(files, tiny_ldm_path, tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(
        [
            "restore",
            str(files / "astro.png"),
            "-t",
            "sr4",
            "--model",
            str(tiny_ldm_path),
            "--simulate",
            "-o",
            str(out),
            "--steps",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert Image.open(out / "astro_sr4.png").size == (W, H)
    assert Image.open(out / "astro_sr4_compare.png").size == (3 * W + 8, H)


def test_deblur_with_kernel_file(files, tiny_sd_path, tmp_path):
    out = tmp_path / "k"
    rc = main(
        [
            "restore",
            str(files / "astro.png"),
            "-t",
            "deblur-motion",
            "--model",
            str(tiny_sd_path),
            "--kernel",
            str(files / "kernel.npy"),
            "-o",
            str(out),
            "--steps",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0 and (out / "astro_deblur-motion.png").exists()


def test_tasks_lists_presets(capsys):
    assert main(["tasks"]) == 0
    text = capsys.readouterr().out
    for name in TASKS:
        assert name in text
    sr4 = next(line for line in text.splitlines() if line.startswith("sr4"))
    assert sr4.split()[1:7] == ["200", "1", "0.1", "200", "0.9", "0.1"]  # official omega/gamma per family


def test_verify_is_wired(monkeypatch):
    calls = []
    fake = types.ModuleType("verification.report")
    fake.run_verify = lambda **kw: calls.append(kw) or 3
    monkeypatch.setitem(sys.modules, "verification.report", fake)
    assert main(["verify", "--quick", "--out", "rep", "--seed", "7", "--only", "a", "b"]) == 3
    assert calls == [dict(quick=True, thorough=False, out="rep", seed=7, only=["a", "b"])]
    assert main(["verify"]) == 3
    assert calls[-1] == dict(quick=False, thorough=False, out=None, seed=0, only=None)
