"""Per-step time, memory and FLOP efficiency: our PSLD step against the official step, same weights.

The official step (``benchmarks/official.py``) is modelled faithfully: doubled CFG batch, trainable
UNet with SD's ``use_checkpoint`` (blocks recomputed in backward, parameter gradients computed),
``torch.autograd.grad(loss, z_t)``, whole-batch norms, sampled encoding, noisy prediction, a host sync
per step, and fp16 autocast on CUDA. Ours is ``psld.sample`` with ``PSLDConfig.official`` (same math;
batch 1 gives the same latent, printed as a check) on frozen modules with guidance scale 1.

Method: variants run in one process on the same weights, alternated A B A B over ``--pairs`` pairs
(after one warm-up each); each run times ``--steps`` steps, excluding the final decode; medians and
the per-pair ratio official/ours are printed. Memory is the step's own (``measure.step_memory``), each
variant in a fresh child process. FLOPs are counted for one step (``psld.models.flops``) and divided
by the median time: GFLOP/s and the fraction of the best measured 3x3 convolution throughput.

    python benchmarks/step.py                                   # small model, CPU, 256x256
    python benchmarks/step.py --arch sd15 --pairs 3             # SD-1.5-sized random weights
    python benchmarks/step.py --arch sd15 --variants ours,ours-cl,ours-bf16
    python benchmarks/step.py --arch sd15 --scaling              # ours at 256/384/512 and batch 1/2/4
    python benchmarks/step.py --arch sd15 --res 512 --dtype fp16 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from archs import DTYPES, SD_SCHEDULER, UNETS, build  # noqa: E402
from measure import conv_throughput, fit_exponent, step_memory, sync  # noqa: E402
from official import official_steps  # noqa: E402

VARIANTS = ("official", "ours", "ours-cl", "ours-bf16", "ours-lowmem", "ours-compile")


class Bench:
    """One problem (random inpainting of a random image) and the variants' step runners."""

    def __init__(self, args: argparse.Namespace):
        from psld.config import PSLDConfig
        from psld.operators import RandomInpainting

        self.args, self.device = args, torch.device(args.device)
        self.unet, self.vae, self.embeds = build(
            args.arch, self.device, DTYPES[args.dtype], DTYPES[args.vae_dtype or args.dtype]
        )
        res, b = args.res, args.batch
        self.op = RandomInpainting((3, res, res), drop=0.5, batch=1, seed=0)
        x = torch.rand(b, 3, res, res, generator=torch.Generator().manual_seed(2)) * 2 - 1
        self.y = self.op(x.to(self.device))
        g = torch.Generator().manual_seed(3)
        self.latents = torch.randn(b, 4, res // 8, res // 8, generator=g).to(self.device)
        self.config = PSLDConfig.official("inpaint-random", num_steps=args.steps)
        self.models: dict[str, tuple] = {}

    def gens(self) -> list[torch.Generator]:
        # CPU generators: the same noise on any device
        return [torch.Generator().manual_seed(10 + i) for i in range(self.args.batch)]

    def _models(self, name: str) -> tuple:
        """(unet, vae) for a variant: shared weights, or a converted copy (own layout or dtype)."""
        if name in self.models:
            return self.models[name]
        unet, vae = self.unet, self.vae
        if name in ("ours-cl", "ours-bf16", "ours-compile"):
            unet, vae = copy.deepcopy(unet), copy.deepcopy(vae)
        if name == "ours-cl":
            unet, vae = unet.to(memory_format=torch.channels_last), vae.to(memory_format=torch.channels_last)
        if name == "ours-bf16":
            unet, vae = unet.to(torch.bfloat16), vae.to(torch.bfloat16)
        if name == "ours-compile":
            unet.compile()
            vae.encoder.compile()
            vae.decoder.compile()
        self.models[name] = (unet, vae)
        return unet, vae

    def run(self, name: str, steps: int) -> tuple[float, torch.Tensor]:
        """Seconds per step over ``steps`` steps (final decode excluded) and the final latent."""
        from psld.models.adapters import KLDecoder, KLEncoder, UNetPrior, alphas_cumprod_from_config
        from psld.sampler import sample, schedule_for
        from psld.schedule import DDIMSchedule

        unet, vae = self._models(name)
        ac = alphas_cumprod_from_config(SD_SCHEDULER)
        cfg = self.config.replace(num_steps=steps)
        marks: list[float] = []

        def mark(*_):
            if len(marks) == steps - 1:
                sync(self.device)
            marks.append(time.perf_counter())

        sync(self.device)
        start = time.perf_counter()
        if name == "official":
            # the official timesteps and abar pairs (the UNet sees `seen`, e.g. t + 1 at 1000 steps)
            abar_sched, seen = schedule_for(cfg, ac)
            sched = DDIMSchedule(seen, abar_sched.alpha, abar_sched.alpha_prev)
            z = official_steps(
                unet, vae, self.embeds.to(unet.dtype), self.op, self.y, self.latents, sched, self.gens(),
                omega=cfg.omega, gamma=cfg.gamma, on_step=mark,
            )  # fmt: skip
            print(file=sys.stderr)
        else:
            prior = UNetPrior(unet, ac, prompt_embeds=self.embeds.to(unet.dtype))
            lowmem = name == "ours-lowmem"
            for module in (unet, vae):
                module.enable_gradient_checkpointing() if lowmem else module.disable_gradient_checkpointing()
            z = sample(
                prior, KLEncoder(vae), KLDecoder(vae), self.op, self.y, config=cfg,
                generator=self.gens(), latents=self.latents, callback=mark,
            ).z  # fmt: skip
            for module in (unet, vae):
                module.disable_gradient_checkpointing()
        return (marks[-1] - start) / steps, z

    def flops(self, name: str) -> int:
        """FLOPs of one step (ours: the final no-grad decode of ``sample`` subtracted)."""
        from psld.models.flops import FlopCounter

        with FlopCounter() as counter:
            self.run(name, 1)
        total = counter.total
        if name != "official":
            _, vae = self._models(name)
            with FlopCounter() as dec, torch.no_grad():
                vae.decode(self.latents.to(vae.dtype) / vae.config.scaling_factor)
            total -= dec.total
        return total


def _child_args(args: argparse.Namespace, **over) -> list[str]:
    keys = ("arch", "res", "batch", "steps", "dtype", "vae_dtype", "device", "threads")
    vals = {k: getattr(args, k) for k in keys} | over
    out = [sys.executable, os.path.abspath(__file__)]
    for k, v in vals.items():
        if v is not None:
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _child(args: argparse.Namespace) -> dict:
    """In a fresh process: the step's memory on the first step, then (scaling) one more timed run."""
    from psld.models.flops import FlopCounter

    bench = Bench(args)
    name = args.child
    first: list[float] = []
    cpu0 = time.process_time()
    with FlopCounter() as counter:  # per-op bookkeeping only: no tensors are kept
        out = step_memory(lambda: first.append(bench.run(name, 1)[0]), bench.device)
    # CPU seconds of this process during the step (with the final decode): robust to a shared machine
    out["first_step_cpu_s"] = time.process_time() - cpu0
    out["first_step_s"], out["gflop"] = first[0], counter.total / 1e9
    if name != "official":  # the final no-grad decode of psld.sample is not part of the step
        with FlopCounter() as dec, torch.no_grad():
            bench.vae.decode(bench.latents.to(bench.vae.dtype) / bench.vae.config.scaling_factor)
        out["gflop"] -= dec.total / 1e9
    return out


def _spawn(args: argparse.Namespace, variant: str, **over) -> dict:
    cmd = _child_args(args, **over) + ["--child", variant]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if proc.returncode:
        raise SystemExit(f"child {variant} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> dict:
    bench = Bench(args)
    names = args.variants.split(",")
    report: dict = {"variants": {}}
    if args.pairs == 0:  # FLOP counts only (one step per variant, untimed)
        report["variants"] = {name: {"gflop": bench.flops(name) / 1e9} for name in names}
        return report
    first_call = {}
    for name in names:  # warm-up (and compile time for ours-compile)
        t0 = time.perf_counter()
        bench.run(name, 1)
        first_call[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {n: [] for n in names}
    finals: dict[str, torch.Tensor] = {}
    for p in range(args.pairs):
        for name in names:
            sec, finals[name] = bench.run(name, args.steps)
            times[name].append(sec)
            print(f"pair {p}: {name} {sec:.3f} s/step", file=sys.stderr)
    base = names[1] if names[0] == "official" and len(names) > 1 else names[0]
    for name in names:
        row = {"s_per_step": statistics.median(times[name]), "runs": times[name]}
        row["first_call_s"] = first_call[name]
        ref = finals[base]
        row["latent_rel_diff_vs_" + base] = float((finals[name] - ref).norm() / ref.norm())
        report["variants"][name] = row
    if not args.no_flops:
        for name in names:
            report["variants"][name]["gflop"] = bench.flops(name) / 1e9
    if not args.no_memory and bench.device.type == "cuda":  # in process: peak reset per run
        for name in names:
            report["variants"][name]["memory"] = step_memory(partial(bench.run, name, 1), bench.device)
    elif not args.no_memory:  # CPU: a fresh child process per variant, after freeing these weights
        bench = None
        for name in names:
            report["variants"][name]["memory"] = _spawn(args, name)
    report["roofline"] = conv_throughput(torch.device(args.device), DTYPES[args.dtype])
    return report


def print_compare(args: argparse.Namespace, report: dict) -> None:
    if args.pairs == 0:
        for name, r in report["variants"].items():
            print(f"{args.arch} {args.res}px batch {args.batch}: {name} {r['gflop']:.0f} GFLOP/step")
        return
    rows, peak = report["variants"], max(report["roofline"].values())
    names = list(rows)
    base = names[1] if names[0] == "official" and len(names) > 1 else names[0]
    print(
        f"\n{args.arch} UNet/VAE (random weights), {args.res}x{args.res}, batch {args.batch}, "
        f"UNet {args.dtype}, VAE {args.vae_dtype or args.dtype}, {_machine(args)}; "
        f"{args.pairs} alternated runs of {args.steps} step(s) each"
    )
    print(
        f"best measured 3x3 conv: {peak:.0f} GFLOP/s ({max(report['roofline'], key=report['roofline'].get)})"
    )
    print(
        f"{'variant':<14}{'s/step':>9}{'GFLOP':>9}{'GFLOP/s':>9}{'roofline':>9}{'step MiB':>10}{'diff':>10}"
    )
    for name, r in rows.items():
        gf = r.get("gflop", float("nan"))
        mem = r.get("memory", {}).get("step_mib", float("nan"))
        rate = gf / r["s_per_step"]
        diff = r["latent_rel_diff_vs_" + base]
        print(
            f"{name:<14}{r['s_per_step']:>9.3f}{gf:>9.0f}{rate:>9.0f}{rate / peak:>9.0%}"
            f"{mem:>10.0f}{diff:>10.1e}"
        )
    for name in names:
        if name == base:
            continue
        ratios = [a / b for a, b in zip(rows[name]["runs"], rows[base]["runs"], strict=True)]
        print(
            f"{name}/{base}: median {statistics.median(rows[name]['runs']) / rows[base]['s_per_step']:.2f}x "
            f"(per pair {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print("diff: relative L2 difference of the final latent against " + base)


def scaling(args: argparse.Namespace) -> dict:
    """Ours at 256/384/512 (batch 1) and batch 1/2/4 (256), the low-memory mode and the official step for
    comparison: one fresh child process per row, timing its first step (no warm-up)."""
    configs = [("ours", 256, 1), ("ours", 384, 1), ("ours", 512, 1), ("ours", 256, 2), ("ours", 256, 4)]
    configs += [("ours-lowmem", 512, 1), ("official", 256, 1)]
    if args.rows:  # variant:res:batch,...
        configs = [(v, int(r), int(b)) for v, r, b in (row.split(":") for row in args.rows.split(","))]
    rows = []
    for variant, res, batch in configs:
        r = _spawn(args, variant, res=res, batch=batch, steps=1)
        rows.append({"variant": variant, "res": res, "batch": batch, **r})
        print(
            f"row {variant} {res} {batch}: {json.dumps(r)}",
            file=sys.stderr,
        )
    ours = [r for r in rows if r["variant"] == "ours"]
    side = [r for r in ours if r["batch"] == 1]
    batch = [r for r in ours if r["res"] == 256]
    if len(side) < 2 or len(batch) < 2:
        return {"rows": rows, "exponents": {}}
    fit = {
        "time_vs_pixels": fit_exponent([r["res"] ** 2 for r in side], [r["first_step_s"] for r in side]),
        "memory_vs_pixels": fit_exponent([r["res"] ** 2 for r in side], [r["step_mib"] for r in side]),
        "time_vs_batch": fit_exponent([r["batch"] for r in batch], [r["first_step_s"] for r in batch]),
        "memory_vs_batch": fit_exponent([r["batch"] for r in batch], [r["step_mib"] for r in batch]),
    }
    return {"rows": rows, "exponents": fit}


def print_scaling(args: argparse.Namespace, report: dict) -> None:
    print(
        f"\nscaling, {args.arch}, UNet {args.dtype}, {_machine(args)}: first step of a fresh process per row"
    )
    print(f"{'variant':<13}{'size':>6}{'batch':>7}{'s/step':>9}{'step MiB':>10}{'maxrss MiB':>12}")
    for r in report["rows"]:
        print(
            f"{r['variant']:<13}{r['res']:>6}{r['batch']:>7}{r['first_step_s']:>9.2f}{r['step_mib']:>10.0f}"
            f"{r.get('maxrss_growth_mib', float('nan')):>12.0f}"
        )
    e = report["exponents"]
    if not e:
        return
    print(
        f"fitted exponents: time ~ pixels^{e['time_vs_pixels']:.2f}, "
        f"memory ~ pixels^{e['memory_vs_pixels']:.2f}; time ~ batch^{e['time_vs_batch']:.2f}, "
        f"memory ~ batch^{e['memory_vs_batch']:.2f}"
    )


def _machine(args: argparse.Namespace) -> str:
    if args.device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(args.device))
    return f"CPU, {torch.get_num_threads()} threads"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=tuple(UNETS), default="small")
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--pairs", type=int, default=3, help="alternated runs per variant")
    p.add_argument("--steps", type=int, default=1, help="DDIM steps per timed run")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="UNet dtype")
    p.add_argument("--vae-dtype", choices=tuple(DTYPES), help="VAE dtype (default: fp32)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--variants", default="official,ours", help=f"comma list from {','.join(VARIANTS)}")
    p.add_argument(
        "--scaling", action="store_true", help="ours at 256/384/512, batch 1/2/4, low-memory at 512"
    )
    p.add_argument("--rows", help="scaling rows instead of the default ones: variant:res:batch,...")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.vae_dtype = args.vae_dtype or "fp32"
    if args.res % 8:
        p.error("--res must be a multiple of 8")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    report = scaling(args) if args.scaling else compare(args)
    report["setup"] = {**vars(args), "machine": _machine(args), "torch": torch.__version__}
    (print_scaling if args.scaling else print_compare)(args, report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
