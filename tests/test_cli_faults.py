"""The ``psld`` command under faults: checks before the model loads, divergence, existing outputs,
``--version``, and interruption leaving no partial file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import psld
from psld.cli import main

PSLD = Path(sys.executable).with_name("psld")
H, W = 16, 16


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-fault-inputs")
    img = (np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(d / "img.png")
    Image.fromarray(np.zeros((H, W), np.uint8)).save(d / "black.png")
    (d / "afile").write_text("a regular file")
    return d


def _restore(files: Path, model, out, *extra: str) -> list[str]:
    head = ["restore", str(files / "img.png"), "-t", "sr2", "--model", str(model), "-o", str(out)]
    return [*head, "--steps", "2", "--no-progress", *extra]


def _one_error(capsys, match: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("psld: error: ") and match in err[0], err


# checked before the model is loaded: the model folder here does not exist, so a check that came after
# loading would report the model instead
@pytest.mark.parametrize(
    "out, extra, match",
    [
        ("{files}/afile/sub", [], "is a file"),
        ("{files}/afile", [], "not a folder"),
        ("/proc/psld-out", [], "not writable"),
        ("{tmp}/o", ["--device", "nosuchdevice"], "device"),
        ("{tmp}/o", ["--omega", "inf"], "--omega"),
        ("{tmp}/o", ["--gamma", "nan"], "--gamma"),
        ("{tmp}/o", ["--sigma-y", "inf"], "--sigma-y"),
    ],
)
def test_refused_before_the_model_loads(files, tmp_path, capsys, out, extra, match):
    target = out.format(files=files, tmp=tmp_path)
    assert main(_restore(files, tmp_path / "no-such-model", target, *extra)) == 2
    _one_error(capsys, match)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(files, tiny_sd_path, tmp_path, capsys):
    assert main(_restore(files, tiny_sd_path, tmp_path / "o", "--device", "cuda")) == 2
    _one_error(capsys, "CUDA is not available")
    assert not (tmp_path / "o").exists()


def test_unwritable_output_with_a_real_model(files, tiny_sd_path, capsys):
    assert main(_restore(files, tiny_sd_path, "/proc/psld-out")) == 2
    _one_error(capsys, "not writable")


def test_mask_observing_no_pixel(files, tiny_sd_path, tmp_path, capsys):
    argv = ["restore", str(files / "img.png"), "-t", "inpaint-box", "--model", str(tiny_sd_path),
            "--mask", str(files / "black.png"), "-o", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    _one_error(capsys, "observes no pixel")
    assert not (tmp_path / "o").exists()


def test_divergence_is_one_line_and_writes_nothing(files, tiny_sd_path, tmp_path, capsys):
    assert main(_restore(files, tiny_sd_path, tmp_path / "o", "--omega", "1e38")) == 2
    _one_error(capsys, "sampling diverged: non-finite latents or losses first at step")
    assert not (tmp_path / "o").exists()


def test_existing_outputs_need_overwrite(files, tiny_sd_path, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(_restore(files, tiny_sd_path, out)) == 0
    first = (out / "img_sr2.png").read_bytes()
    capsys.readouterr()
    # refused before loading (the model path does not exist), nothing touched
    assert main(_restore(files, tmp_path / "no-such-model", out, "--seed", "5")) == 2
    _one_error(capsys, "exists; pass --overwrite")
    assert (out / "img_sr2.png").read_bytes() == first
    assert main(_restore(files, tiny_sd_path, out, "--seed", "5", "--overwrite")) == 0
    assert (out / "img_sr2.png").read_bytes() != first
    assert sorted(p.name for p in out.iterdir()) == ["img_sr2.png", "img_sr2_compare.png"]


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"psld {psld.__version__}"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupt_while_writing_leaves_no_partial_file(files, tiny_sd_path, tmp_path, sig):
    """The test hook pauses after the outputs are written to temporary names, before the rename."""
    out = tmp_path / "o"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "_PSLD_TEST_PAUSE_BEFORE_RENAME": "60",
    }
    proc = subprocess.Popen(
        [str(PSLD), *_restore(files, tiny_sd_path, out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a job started in the background inherits SIGINT ignored (POSIX): give the child the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    try:
        deadline = time.monotonic() + 240
        while not (out.is_dir() and len(list(out.glob(".*.tmp*"))) == 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.05)
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc != 0
    assert list(out.iterdir()) == []  # neither a temporary nor a final file
    assert proc.stderr.read().decode().count("\n") <= 1
