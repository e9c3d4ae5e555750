"""psld evaluate: metrics from the written files, resume after SIGKILL, 2-process accelerate, bad input.

One configuration (3 images of 64 px, sr4 + inpaint-random, psld/ldps/dps/pinv, 2 steps on tiny random
models) is run once in-process as the reference; the other runs must reproduce its rows.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import psld
from psld.evaluation.methods import simulate
from psld.evaluation.report import CELL_PX, figure, figure_size
from psld.evaluation.store import read_rows

TASKS = ["sr4", "inpaint-random"]
METHODS = ["psld", "ldps", "dps", "pinv"]
NUMBERS = ("psnr", "ssim", "residual", "seed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_ldm_path):
    from tiny_models import build_tiny_pixel

    root = tmp_path_factory.mktemp("evaluate")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    for i, name in enumerate(["b_waves", "a_ramp", "c_noise"]):  # sorted order: a_ramp, b_waves, c_noise
        base = np.stack([np.sin(3 * xx + i), yy, np.cos(2 * yy * xx + i)], -1) * 0.4 + 0.5
        arr = np.clip(base + 0.05 * rng.standard_normal((64, 64, 3)), 0, 1)
        Image.fromarray((arr * 255).round().astype(np.uint8)).save(images / f"{name}.png")
    pixel = build_tiny_pixel(root / "tiny-pixel")
    args = dict(
        model=str(tiny_ldm_path), pixel_model=str(pixel), size=64, steps=2, seed=5, methods=",".join(METHODS)
    )
    out = root / "reference"
    result = psld.evaluate(str(images), TASKS, out=str(out), progress=False, **args)
    return dict(root=root, images=images, args=args, out=out, result=result)


def _cli_args(s: dict, out: Path) -> list[str]:
    a = s["args"]
    cmd = ["evaluate", "--images", str(s["images"]), "-o", str(out), "--no-progress", "--device", "cpu"]
    for t in TASKS:
        cmd += ["-t", t]
    cmd += ["--methods", a["methods"], "--model", a["model"], "--pixel-model", a["pixel_model"]]
    return cmd + ["--size", str(a["size"]), "--steps", str(a["steps"]), "--seed", str(a["seed"])]


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def _by_key(rows: list[dict]) -> dict:
    return {(r["image"], r["task"], r["method"]): r for r in rows}


def _same_numbers(rows: list[dict], ref: list[dict]) -> None:
    a, b = _by_key(rows), _by_key(ref)
    assert set(a) == set(b) and len(rows) == len(a)
    for k in b:
        for f in NUMBERS:
            assert a[k][f] == pytest.approx(b[k][f], rel=1e-6, abs=1e-9), (k, f)


def _rgb01(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def test_rows_match_metrics_recomputed_from_the_written_pngs(setup):
    out, rows = setup["out"], setup["result"].rows
    assert psld.evaluate.__module__ == "psld.evaluation.runner"
    assert len(rows) == 3 * len(TASKS) * len(METHODS) and read_rows(out / "results.jsonl") == rows
    assert [r["image"] for r in rows[:: len(TASKS) * len(METHODS)]] == ["a_ramp", "b_waves", "c_noise"]
    for r in rows:
        truth = _rgb01(setup["images"] / f"{r['image']}.png")  # 64 px inputs: the crop is the file itself
        assert np.array_equal(truth, _rgb01(out / "gt" / f"{r['image']}.png"))
        result = _rgb01(out / r["task"] / r["method"] / f"{r['image']}.png")
        p = peak_signal_noise_ratio(truth, result, data_range=1.0)
        s = structural_similarity(truth, result, data_range=1.0, channel_axis=-1)
        # the rows hold the metrics of the float result; the PNG is that result rounded to 8 bits, an
        # error e with |e| <= 0.5/255 per pixel, so the RMSE moves by at most d = 0.5/255 (triangle
        # inequality) and PSNR = -20 log10(RMSE) by at most 20 log10(rmse / (rmse - d))
        rmse, d = 10 ** (-r["psnr"] / 20), 0.5 / 255
        assert abs(r["psnr"] - p) <= 20 * np.log10(rmse / (rmse - d)) + 1e-9, r
        assert abs(r["ssim"] - s) < 5e-3, r
        if r["method"] == "pinv":  # the check can fail: against another image's truth it is far off
            other = _rgb01(setup["images"] / ("c_noise.png" if r["image"] != "c_noise" else "a_ramp.png"))
            assert abs(peak_signal_noise_ratio(other, result, data_range=1.0) - p) > 0.2
        assert r["residual"] >= 0 and r["seconds"] > 0
    # pinv for inpainting is the measurement on the observed pixels; every method saw the same seed
    for r in rows:
        if r["task"] == "inpaint-random" and r["method"] == "pinv":
            meas = _rgb01(out / "inpaint-random" / "measurement" / f"{r['image']}.png")
            pinv = _rgb01(out / "inpaint-random" / "pinv" / f"{r['image']}.png")
            observed = np.abs(pinv - 0.5).max(-1) > 1 / 255
            assert observed.mean() > 0.2 and np.allclose(pinv[observed], meas[observed], atol=1 / 255)
    assert len({(r["image"], r["task"], r["seed"]) for r in rows}) == 3 * len(TASKS)


def test_measurement_is_the_one_solve_simulates(setup, tiny_ldm):
    x01 = torch.from_numpy(_rgb01(setup["images"] / "a_ramp.png")).permute(2, 0, 1)[None].float()
    op, y, seed = simulate(
        "inpaint-random", x01, seed=5, image="a_ramp", sigma_y=0.025, sr_mode="bicubic", size=64, family="ldm"
    )
    out = psld.solve(x01, op, model=tiny_ldm, simulate=True, seed=seed, num_inference_steps=1, progress=False)
    assert torch.allclose(out.measurement, (y + 1) / 2, atol=1e-6)
    row = _by_key(setup["result"].rows)[("a_ramp", "inpaint-random", "pinv")]
    assert row["seed"] == seed


def test_summary_figures_and_run_json(setup):
    out, rows = setup["out"], setup["result"].rows
    table = list(csv.DictReader(open(out / "summary.csv")))
    assert [(e["task"], e["method"]) for e in table] == [(t, m) for t in TASKS for m in METHODS]
    for e in table:
        ps = [r["psnr"] for r in rows if r["task"] == e["task"] and r["method"] == e["method"]]
        assert int(e["n"]) == 3 and float(e["psnr_mean"]) == pytest.approx(np.mean(ps))
    for t in TASKS:
        best = max((e for e in table if e["task"] == t), key=lambda e: float(e["psnr_mean"]))
        assert "psnr" in best["best"].split(";")
    md = (out / "summary.md").read_text()
    assert md.count("\n| sr4 |") == len(METHODS) and "**" in md and "LPIPS" in md and "not computed" in md
    assert setup["result"].to_markdown() == md
    run = json.loads((out / "run.json").read_text())
    assert run["methods"] == METHODS and run["versions"]["torch"] and run["config"]["version"] == "0.1.0"
    assert run["entries"]["sr4/psld"]["sampler"]["num_steps"] == 2
    assert run["entries"]["sr4/pinv"] == {"model": None, "sampler": None}
    # figure: rows = images, columns = GT | measurement | methods; LABEL + CELL*cols by TITLE + CELL*rows
    for t in TASKS:
        assert Image.open(out / "figures" / f"{t}.png").size == figure_size(3, len(METHODS))
        assert (out / "figures" / f"{t}.pdf").read_bytes().startswith(b"%PDF")
    assert figure_size(3, 4) == (100 + 150 * 6, 30 + 150 * 3)
    small = setup["root"] / "small-figure"
    shutil.copytree(out, small)
    png = figure(small, "sr4", ["a_ramp"], ["psld"])[0]
    assert Image.open(png).size == (figure_size(3, 4)[0] - 3 * CELL_PX, figure_size(3, 4)[1] - 2 * CELL_PX)


def test_rerun_skips_everything_and_changed_config_is_refused(setup):
    out = setup["out"]
    before = (out / "results.jsonl").read_text()
    again = psld.evaluate(str(setup["images"]), TASKS, out=str(out), progress=False, **setup["args"])
    assert (out / "results.jsonl").read_text() == before and again.rows == setup["result"].rows
    assert again.computed == []  # a rerun computes nothing ...
    first = setup["result"].computed  # ... and the first run reports every entry, each once, in order
    assert first == [(r["image"], r["task"], r["method"]) for r in setup["result"].rows]
    assert len(set(first)) == 3 * len(TASKS) * len(METHODS)
    with pytest.raises(ValueError, match=r"another configuration \(sr4/psld: sampler.num_steps 2 -> 3;"):
        psld.evaluate(
            str(setup["images"]), TASKS, out=str(out), progress=False, **{**setup["args"], "steps": 3}
        )
    assert (out / "results.jsonl").read_text() == before


def test_resume_after_sigkill_recomputes_only_the_missing_entries(setup):
    out = setup["root"] / "killed"
    cmd = [sys.executable, "-m", "psld", *_cli_args(setup, out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and results.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    first = read_rows(results)
    total = 3 * len(TASKS) * len(METHODS)
    assert 1 <= len(first) < total, "the kill should land midway"
    for png in out.rglob("*.png"):  # no partial PNG under a final name
        if not png.name.startswith("."):
            Image.open(png).load()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_rows(results)
    _same_numbers(rows, setup["result"].rows)
    old = [r for r in rows if r["finished"] < killed_at]
    assert sorted(map(json.dumps, old)) == sorted(map(json.dumps, first))  # kept as they were
    assert len(rows) - len(old) == total - len(first)  # only the missing ones were computed


def test_two_process_accelerate_matches_one_process(setup, tmp_path):
    import socket

    accelerate = Path(sys.executable).with_name("accelerate")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = setup["root"] / "accelerate"
    # accelerate 1.16 runs `--cpu` jobs with its one-process launcher; `--multi_gpu` starts torchrun, and
    # without CUDA the two processes form a gloo group on the CPU
    launch = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port)]
    env = {**_env(), "HF_HOME": str(tmp_path / "hf")}  # no user accelerate config file
    proc = subprocess.run(
        [*launch, "-m", "psld", *_cli_args(setup, out)], env=env, capture_output=True, text=True, timeout=280
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(out / "results.jsonl")
    _same_numbers(rows, setup["result"].rows)
    assert {r["rank"] for r in rows} == {0, 1} and not list(out.glob("results.rank*.jsonl"))
    assert [r["image"] for r in rows] == [r["image"] for r in setup["result"].rows]  # merged in order
    for r in rows:
        rel = Path(r["task"]) / r["method"] / f"{r['image']}.png"
        assert np.abs(_rgb01(out / rel) - _rgb01(setup["out"] / rel)).max() <= 1 / 255
    assert Image.open(out / "figures" / "sr4.png").size == figure_size(3, len(METHODS))
    assert (out / "summary.md").is_file()


# ---------------------------------------------------------------------------------------------- bad input
def _bad(capsys, argv: list[str], match: str, out: Path) -> None:
    from psld.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("psld: error:") and "\n" not in err and match in err, err
    assert not out.exists() or out.is_file()


def test_every_bad_input_is_one_line_exit_2_before_any_model_loads(tmp_path, capsys):
    good = tmp_path / "imgs"
    good.mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(good / "x.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    missing_model = str(tmp_path / "no-such-model")  # loading it would fail with another message

    def argv(images=str(good), task="sr4", methods="psld,pinv", o=out, extra=()):
        return [
            "evaluate",
            "--images",
            images,
            "-t",
            task,
            "--methods",
            methods,
            "--model",
            missing_model,
            "-o",
            str(o),
            *extra,
        ]

    _bad(capsys, argv(images=str(empty)), "holds no image files", out)
    _bad(capsys, argv(images=str(tmp_path / "*.jpg")), "matches no files", out)
    _bad(capsys, argv(images=str(broken)), "bad.png", out)
    _bad(capsys, argv(task="sr5"), "unknown task 'sr5'", out)
    _bad(capsys, argv(methods="psld,foo"), "unknown method 'foo'", out)
    _bad(capsys, argv(methods="psld,dps"), "--pixel-model", out)
    _bad(
        capsys,
        ["evaluate", "--images", str(good), "-t", "sr4", "--methods", "ldps", "-o", str(out)],
        "--model",
        out,
    )
    _bad(capsys, argv(extra=("--resize", "stretch")), "resize", out)
    _bad(capsys, argv(extra=("--preset", "official"), task="denoise"), "official", out)
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    _bad(capsys, argv(o=a_file), "is not a folder", a_file)
    _bad(capsys, argv(o=a_file / "sub"), "cannot be created", a_file / "sub")
    assert a_file.read_text() == "keep"
    # the model is loaded only after every check passed: then its own error appears
    _bad(capsys, argv(), "does not exist", out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_out_not_writable(tmp_path, capsys):
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(img)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        _bad(
            capsys,
            ["evaluate", "--images", str(img), "-t", "sr4", "--methods", "pinv", "-o", str(locked / "out")],
            "not writable",
            locked / "out",
        )
    finally:
        locked.chmod(0o700)


def test_a_diverged_run_is_a_row_not_the_end_of_the_set(setup, tmp_path):
    """omega = 1e30 makes psld non-finite (DivergenceError): the set still completes, the diverged
    entries are rows with the message and no metrics, the summary counts them apart, pinv is intact."""
    args = {**setup["args"], "methods": "psld,pinv", "omega": 1e30}
    out = tmp_path / "diverged"
    result = psld.evaluate(str(setup["images"]), ["sr4"], out=str(out), progress=False, **args)
    rows = _by_key(read_rows(out / "results.jsonl"))
    assert len(rows) == 6 and len(result.rows) == 6
    for (image, _, method), row in rows.items():
        if method == "psld":
            assert "diverged" in row["diverged"] and "omega=1e+30" in row["diverged"]
            assert row["psnr"] is None and row["ssim"] is None and row["residual"] is None
            assert not (out / "sr4" / "psld" / f"{image}.png").exists()
        else:
            assert "diverged" not in row and row["psnr"] > 0
            assert (out / "sr4" / "pinv" / f"{image}.png").is_file()
    summary = {r["method"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert summary["psld"]["n"] == "0" and summary["psld"]["diverged"] == "3"
    assert summary["pinv"]["n"] == "3" and summary["pinv"]["diverged"] == "0"
    assert "3 run(s) diverged" in (out / "summary.md").read_text()


def test_out_on_a_read_only_file_system_is_refused(tmp_path, capsys):
    """/proc refuses new files even to root (os.access says yes there): refused before any model loads."""
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(img)
    argv = ["evaluate", "--images", str(img), "-t", "sr4", "--methods", "pinv", "-o", "/proc/psld-out"]
    _bad(capsys, argv, "not writable", Path("/proc/psld-out"))
