"""Throughput of ``psld evaluate`` with 1 and 2 processes on the same job: images per minute and the ratio.

The job: the builtin images (6), one task, one method, on a tiny random LDM (weights do not change the
cost). Each run is a fresh ``accelerate launch ... -m psld evaluate`` into a new output folder, timed
by wall clock from launch to exit (so it includes start-up and model loading, which a larger job
amortises). Runs are interleaved (1, 2, 1, 2, ...) and the median per setting is reported.

    python benchmarks/evaluate.py                  # CPU: 2 processes form a gloo group
    python benchmarks/evaluate.py --steps 50 --size 128 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(n: int, model: Path, out: Path, args: argparse.Namespace, env: dict) -> float:
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    launch = [accelerate, "launch", "--num_processes", str(n), "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_port())]
    if n > 1:
        launch.insert(2, "--multi_gpu")  # torchrun; without CUDA the processes use gloo on the CPU
    cmd = [
        *launch,
        "-m",
        "psld",
        "evaluate",
        "--images",
        "builtin",
        "-t",
        args.task,
        "--methods",
        args.method,
    ]
    cmd += ["--model", str(model), "--size", str(args.size), "--steps", str(args.steps), "-o", str(out)]
    cmd += ["--no-progress", "--device", args.device]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--task", default="sr4")
    parser.add_argument("--method", default="psld")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_ldm

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    images = 6  # builtin
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_ldm(Path(tmp) / "tiny-ldm")
        env["HF_HOME"] = str(Path(tmp) / "hf")  # no user accelerate config
        times: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.repeats):
            for n in (1, 2):
                times[n].append(_run(n, model, Path(tmp) / f"out-{n}-{r}", args, env))
    rate = {n: images / (statistics.median(t) / 60) for n, t in times.items()}
    print(
        f"job: {images} builtin images, {args.task}, {args.method}, {args.size} px, {args.steps} steps, "
        f"tiny random LDM, device {args.device}, {os.cpu_count()} CPUs"
    )
    print("| processes | wall s (median) | images / min |")
    print("|---:|---:|---:|")
    for n in (1, 2):
        print(f"| {n} | {statistics.median(times[n]):.1f} | {rate[n]:.1f} |")
    print(f"ratio 2 / 1 processes: {rate[2] / rate[1]:.2f}")


if __name__ == "__main__":
    main()
