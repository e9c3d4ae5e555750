"""The GPU check behind ``benchmarks/gpu.sh``: writes ``gpu-report.json`` and ``gpu-report.md``.

For SD-1.5- and SD-2.1-sized random weights at 512x512 (no network, nothing downloaded), per UNet
dtype (fp16, bf16; the VAE in fp32 for ours, under fp16/bf16 autocast for the official step):

1. ours vs the faithful official step, alternated (A B A B), median s/step and per-pair ratios;
2. peak GPU memory of one step (``max_memory_allocated``, weights included) by default and in the
   low-memory mode (UNet and VAE block checkpointing);
3. the time of a 200-step run of ours end to end (final decode included) - measured for the first
   architecture, estimated as 200 x s/step + one decode for the others (labelled);
4. fp32 agreement of one guided step on CPU and CUDA from the same weights (TF32 off and on).

``--dry-run`` runs the same code on the CPU with a tiny model at 64x64 (a smoke test, no GPU needed).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from measure import step_memory, sync  # noqa: E402
from step import Bench  # noqa: E402


def _args(arch: str, res: int, dtype: str, device: str, steps: int, pairs: int) -> argparse.Namespace:
    return argparse.Namespace(
        arch=arch, res=res, batch=1, dtype=dtype, vae_dtype="fp32", device=device, steps=steps, pairs=pairs
    )


def compare(arch, res, dtype, device, steps, pairs) -> dict:
    bench = Bench(_args(arch, res, dtype, device, steps, pairs))
    names = ("official", "ours")
    for name in names:
        bench.run(name, 1)  # warm-up
    runs: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(pairs):
        for name in names:
            runs[name].append(bench.run(name, steps)[0])
    row = {n: statistics.median(r) for n, r in runs.items()}
    row["ratio"] = row["official"] / row["ours"]
    row["pair_ratios"] = [a / b for a, b in zip(runs["official"], runs["ours"], strict=True)]
    for name in ("official", "ours", "ours-lowmem"):
        row[f"memory_{name}"] = step_memory(lambda n=name: bench.run(n, 1), bench.device)
    row["bench"] = bench
    return row


def end_to_end(bench: Bench, steps: int) -> float:
    """Seconds for ``psld.sample`` over ``steps`` steps, final decode included."""
    from archs import SD_SCHEDULER

    from psld.models.adapters import KLDecoder, KLEncoder, UNetPrior, alphas_cumprod_from_config
    from psld.sampler import sample

    prior = UNetPrior(bench.unet, alphas_cumprod_from_config(SD_SCHEDULER), prompt_embeds=bench.embeds)
    cfg = bench.config.replace(num_steps=steps)
    sync(bench.device)
    start = time.perf_counter()
    sample(prior, KLEncoder(bench.vae), KLDecoder(bench.vae), bench.op, bench.y, config=cfg,
           generator=bench.gens(), latents=bench.latents)  # fmt: skip
    sync(bench.device)
    return time.perf_counter() - start


def decode_seconds(bench: Bench) -> float:
    with torch.no_grad():
        sync(bench.device)
        start = time.perf_counter()
        bench.vae.decode(bench.latents.to(bench.vae.dtype))
        sync(bench.device)
    return time.perf_counter() - start


def agreement(arch: str, res: int, device: str) -> dict:
    """One guided step of ours in fp32 on CPU and on ``device`` from the same weights."""
    cpu = Bench(_args(arch, res, "fp32", "cpu", 1, 1))
    z_cpu = cpu.run("ours", 1)[1]
    if not device.startswith("cuda"):
        return {"skipped": "no CUDA device (dry run)"}
    gpu = copy.copy(cpu)
    gpu.device = torch.device(device)
    gpu.unet, gpu.vae = copy.deepcopy(cpu.unet).to(device), copy.deepcopy(cpu.vae).to(device)
    gpu.embeds, gpu.y, gpu.latents = cpu.embeds.to(device), cpu.y.to(device), cpu.latents.to(device)
    gpu.models = {}
    out = {}
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        z = gpu.run("ours", 1)[1].cpu()
        out[f"rel_diff_tf32_{'on' if tf32 else 'off'}"] = float((z - z_cpu).norm() / z_cpu.norm())
    return out


def markdown(report: dict) -> str:
    s = report["setup"]
    lines = [
        f"# GPU check ({s['machine']}, torch {s['torch']})",
        "",
        f"Random weights at {s['res']}x{s['res']}, batch 1; {s['pairs']} alternated runs of {s['steps']} "
        "steps; ours: VAE fp32; official: faithful step (benchmarks/official.py) under autocast.",
        "",
        "| model | UNet dtype | official s/step | ours s/step | ratio (per pair) | peak GiB official | "
        "peak GiB ours | peak GiB ours low-memory | 200 steps ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    gib = 2.0**10
    for r in report["rows"]:
        e2e = f"{r['e2e_200_s']:.0f} s ({r['e2e_kind']})"
        pairs = ", ".join(f"{x:.2f}" for x in r["pair_ratios"])
        lines.append(
            f"| {r['arch']} | {r['dtype']} | {r['official']:.3f} | {r['ours']:.3f} | "
            f"{r['ratio']:.2f}x ({pairs}) | "
            f"{r['memory_official']['peak_mib'] / gib:.2f} | {r['memory_ours']['peak_mib'] / gib:.2f} | "
            f"{r['memory_ours-lowmem']['peak_mib'] / gib:.2f} | {e2e} |"
        )
    a = report["agreement"]
    lines += ["", f"fp32 CPU vs CUDA, one guided step ({a.get('arch')} at {a.get('res')}): {a}", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="tiny model at 64x64 on the CPU (smoke test)")
    p.add_argument("--out", default=".", help="folder for gpu-report.json and gpu-report.md")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="steps per timed run")
    args = p.parse_args(argv)
    if args.dry_run:
        archs, res, device, dtypes, e2e_steps, agree = ("tiny",), 64, "cpu", ("bf16",), 4, ("tiny", 64)
        args.pairs, args.steps = 1, 1
    else:
        if not torch.cuda.is_available():
            p.error("no CUDA device: run with --dry-run for the CPU smoke test")
        archs, res, device, dtypes, e2e_steps, agree = (
            ("sd15", "sd21"),
            512,
            "cuda",
            ("fp16", "bf16"),
            200,
            ("sd15", 256),
        )
    rows = []
    for k, arch in enumerate(archs):
        for j, dtype in enumerate(dtypes):
            print(f"{arch} {dtype} ...", file=sys.stderr)
            row = compare(arch, res, dtype, device, args.steps, args.pairs)
            bench = row.pop("bench")
            if k == 0 and j == 0:
                row["e2e_200_s"], row["e2e_kind"] = (
                    end_to_end(bench, e2e_steps) * 200 / e2e_steps,
                    ("measured" if e2e_steps == 200 else f"{e2e_steps} steps scaled to 200"),
                )
            else:
                row["e2e_200_s"], row["e2e_kind"] = 200 * row["ours"] + decode_seconds(bench), "estimated"
            rows.append({"arch": arch, "dtype": dtype, **row})
            del bench
            if device == "cuda":
                torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    report = {
        "rows": rows,
        "agreement": {"arch": agree[0], "res": agree[1], **agreement(*agree, device)},
        "setup": {
            "res": res,
            "pairs": args.pairs,
            "steps": args.steps,
            "machine": torch.cuda.get_device_name() if device == "cuda" else "CPU (dry run)",
            "torch": torch.__version__,
        },
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu-report.json"), "w") as f:
        json.dump(report, f, indent=2)
    text = markdown(report)
    with open(os.path.join(args.out, "gpu-report.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
