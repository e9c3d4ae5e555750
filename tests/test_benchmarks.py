"""The benchmark scripts run end to end on the CPU (tiny model), and the official step they time is
the same math as psld's official preset (batch 1: the same latent from the same noise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable}


def test_step_benchmark_official_equals_ours(tmp_path):
    out = tmp_path / "step.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "step.py"), "--arch", "tiny", "--res", "64",
           "--pairs", "2", "--steps", "2", "--threads", "1", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    official, ours = report["variants"]["official"], report["variants"]["ours"]
    assert len(official["runs"]) == len(ours["runs"]) == 2
    # faithful official step: 2 steps give the same latent as psld.sample with PSLDConfig.official
    assert official["latent_rel_diff_vs_ours"] < 1e-5
    # recompute + parameter gradients + doubled batch: the official step costs more FLOPs
    assert official["gflop"] > 1.2 * ours["gflop"] > 0  # measured 1.41x on this tiny model
    assert ours["memory"]["step_mib"] > 0 and max(report["roofline"].values()) > 0
    # CPU seconds per step, final decode excluded: positive and one per timed run
    assert len(ours["cpu_runs"]) == 2 and 0 < ours["cpu_s_per_step"]
    assert "official/ours (wall): median of pairs" in proc.stdout
    assert "official/ours (CPU): median of pairs" in proc.stdout


def test_step_benchmark_scaling_and_allocator_modes(tmp_path):
    base = [sys.executable, str(ROOT / "benchmarks" / "step.py"), "--arch", "tiny", "--threads", "1"]
    out = tmp_path / "scaling.json"
    rows = "ours:64:1,ours:96:1,ours:64:2,ours:64:4"
    proc = subprocess.run(base + ["--scaling", "--rows", rows, "--json", str(out)],
                          capture_output=True, text=True, env=_env(), timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [(r["res"], r["batch"]) for r in report["rows"]] == [(64, 1), (96, 1), (64, 2), (64, 4)]
    assert all(r["warm_cpu_s"] > 0 and r["step_mib"] > 0 for r in report["rows"])
    # a bigger problem needs more memory: both fitted exponents are positive
    assert report["exponents"]["memory_vs_pixels"] > 0 and report["exponents"]["memory_vs_batch"] > 0
    assert "fitted: time ~ pixels^" in proc.stdout and "fitted: time ~ batch^" in proc.stdout

    out = tmp_path / "alloc.json"
    proc = subprocess.run(base + ["--res", "64", "--allocator-ab", "--pairs", "1", "--json", str(out)],
                          capture_output=True, text=True, env=_env(), timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {k: len(v) for k, v in report["runs"].items()} == {"glibc": 1, "keep": 1}
    # the allocator changes no arithmetic: the same latent in every process
    assert report["max_latent_rel_diff"] == 0.0
    assert "glibc/keep (CPU): median" in proc.stdout


def test_gpu_script_dry_run(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", str(tmp_path)],
        capture_output=True, text=True, env=_env(), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-report.json").read_text())
    (row,) = report["rows"]
    assert row["official"] > 0 and row["ours"] > 0 and len(row["pair_ratios"]) == 1
    assert {"memory_official", "memory_ours", "memory_ours-lowmem"} <= set(row)
    assert "| tiny | bf16 |" in (tmp_path / "gpu-report.md").read_text()


def test_gpu_script_finds_the_venv_without_PYTHON(tmp_path):
    """With no $PYTHON and no python on the PATH, gpu.sh runs the project's .venv/bin/python."""
    import shutil

    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu.sh", repo / "benchmarks" / "gpu.sh")
    fake = repo / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/called"\n')
    fake.chmod(0o755)
    bin_dir = tmp_path / "bin"  # only what gpu.sh needs besides python
    bin_dir.mkdir()
    for tool in ("dirname", "timeout"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"} | {"PATH": str(bin_dir)}
    proc = subprocess.run(
        ["/bin/bash", str(repo / "benchmarks" / "gpu.sh"), "--dry-run", "OUT"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (fake.parent / "called").read_text().split() == [
        "benchmarks/gpu_report.py",
        "--dry-run",
        "--out",
        "OUT",
    ]
