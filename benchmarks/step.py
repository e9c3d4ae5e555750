"""Per-step time, memory and FLOP efficiency: our PSLD step against the official step, same weights.

The official step (``benchmarks/official.py``) is modelled faithfully: doubled CFG batch, trainable
UNet with SD's ``use_checkpoint`` (blocks recomputed in backward, parameter gradients computed),
``torch.autograd.grad(loss, z_t)``, whole-batch norms, sampled encoding, noisy prediction, a host sync
per step, and fp16 autocast on CUDA. Ours is ``psld.sample`` with ``PSLDConfig.official`` (same math;
batch 1 gives the same latent, printed as a check) on frozen modules with guidance scale 1.

Method: variants run in one process on the same weights, alternated A B A B over ``--pairs`` pairs
(after one warm-up each); each run times ``--steps`` steps, excluding the final decode, in wall and
in CPU seconds of the process (all threads); medians and the per-pair ratio official/ours are
printed. Memory is the step's own (``measure.step_memory``), each variant in a fresh child process.
FLOPs are counted for one step (``psld.models.flops``). Efficiency: GFLOP per CPU-second (on CUDA: per
wall second) against the best measured 3x3 convolution, timed with the same clock (per core on CPU).
The process keeps freed memory for reuse (``psld.heap.keep_freed_memory``, as the ``psld`` command
does); ``--allocator glibc`` leaves glibc's default, and ``--allocator-ab`` compares the two in
alternated fresh processes.

    python benchmarks/step.py                                   # small model, CPU, 256x256
    python benchmarks/step.py --arch sd15 --pairs 3             # SD-1.5-sized random weights
    python benchmarks/step.py --arch sd15 --variants ours,ours-cl,ours-bf16
    python benchmarks/step.py --arch sd15 --scaling              # ours at 256/384/512 and batch 1/2/4
    python benchmarks/step.py --arch sd15 --allocator-ab --pairs 3  # keep_freed_memory on/off
    python benchmarks/step.py --arch sd15 --res 512 --dtype fp16 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from typing import NamedTuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from archs import DTYPES, SD_SCHEDULER, UNETS, build  # noqa: E402
from measure import conv_throughput, fit_exponent, step_memory, sync  # noqa: E402
from official import official_steps  # noqa: E402

VARIANTS = ("official", "ours", "ours-cl", "ours-bf16", "ours-lowmem", "ours-compile")


class Timing(NamedTuple):
    """Per-step wall and CPU seconds of one run (final decode excluded) and its final latent."""

    s_per_step: float
    z: torch.Tensor
    cpu_s_per_step: float


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

    def run(self, name: str, steps: int) -> Timing:
        """Seconds per step over ``steps`` steps (final decode excluded) and the final latent."""
        from psld.models.adapters import KLDecoder, KLEncoder, UNetPrior, alphas_cumprod_from_config
        from psld.sampler import sample, schedule_for
        from psld.schedule import DDIMSchedule

        unet, vae = self._models(name)
        ac = alphas_cumprod_from_config(SD_SCHEDULER)
        cfg = self.config.replace(num_steps=steps)
        marks: list[float] = []
        cpu_marks: list[float] = []

        def mark(*_):
            if len(marks) == steps - 1:
                sync(self.device)
            marks.append(time.perf_counter())
            cpu_marks.append(time.process_time())

        sync(self.device)
        start, cpu_start = time.perf_counter(), time.process_time()
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
        return Timing((marks[-1] - start) / steps, z, (cpu_marks[-1] - cpu_start) / steps)

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
    keys = ("arch", "res", "batch", "steps", "dtype", "vae_dtype", "device", "threads", "allocator")
    vals = {k: getattr(args, k) for k in keys} | over
    out = [sys.executable, os.path.abspath(__file__)]
    for k, v in vals.items():
        if v is not None:
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def _child(args: argparse.Namespace) -> dict:
    """In a fresh process: the step's memory on the first step, then ``args.steps`` warm timed steps."""
    from psld.models.flops import FlopCounter

    bench = Bench(args)
    name = args.child
    bench._models(name)  # a converted copy (layout, dtype) is weights, not step memory
    first: list[Timing] = []
    with FlopCounter() as counter:  # per-op bookkeeping only: no tensors are kept
        out = step_memory(lambda: first.append(bench.run(name, 1)), bench.device)
    out["first_step_s"], out["first_step_cpu_s"] = first[0].s_per_step, first[0].cpu_s_per_step
    out["gflop"] = counter.total / 1e9
    if args.warm:  # a second run in the same process: oneDNN primitives built, heap grown
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        warm = bench.run(name, args.steps)
        out["warm_s"], out["warm_cpu_s"] = warm.s_per_step, warm.cpu_s_per_step
        out["warm_faults"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
        if args.latent:
            out["latent"] = warm.z.detach().double().cpu().flatten().tolist()
    if name != "official":  # the final no-grad decode of psld.sample is not part of the step
        with FlopCounter() as dec, torch.no_grad():
            bench.vae.decode(bench.latents.to(bench.vae.dtype) / bench.vae.config.scaling_factor)
        out["gflop"] -= dec.total / 1e9
    return out


def _spawn(args: argparse.Namespace, variant: str, warm: bool = False, latent: bool = False, **over) -> dict:
    flags = (["--warm"] if warm else []) + (["--latent"] if latent else [])
    cmd = _child_args(args, **over) + ["--child", variant] + flags
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
    cpu: dict[str, list[float]] = {n: [] for n in names}
    finals: dict[str, torch.Tensor] = {}
    for p in range(args.pairs):
        for name in names:
            sec, finals[name], cpu_sec = bench.run(name, args.steps)
            times[name].append(sec)
            cpu[name].append(cpu_sec)
            print(f"pair {p}: {name} {sec:.3f} s/step, {cpu_sec:.3f} CPU-s/step", file=sys.stderr)
    base = names[1] if names[0] == "official" and len(names) > 1 else names[0]
    for name in names:
        row = {"s_per_step": statistics.median(times[name]), "runs": times[name]}
        row |= {"cpu_s_per_step": statistics.median(cpu[name]), "cpu_runs": cpu[name]}
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
    report["roofline"] = roofline(args)
    return report


def _wall_clock(args: argparse.Namespace) -> bool:
    """Whether efficiencies divide by wall seconds (CUDA) rather than CPU seconds (CPU)."""
    return torch.device(args.device).type == "cuda"


def roofline(args: argparse.Namespace) -> dict[str, float]:
    """Best 3x3 convolution GFLOP/s per shape, by the clock the efficiency uses (CPU: CPU seconds)."""
    clock = time.perf_counter if _wall_clock(args) else time.process_time
    return conv_throughput(torch.device(args.device), DTYPES[args.dtype], clock=clock)


def print_compare(args: argparse.Namespace, report: dict) -> None:
    if args.pairs == 0:
        for name, r in report["variants"].items():
            print(f"{args.arch} {args.res}px batch {args.batch}: {name} {r['gflop']:.0f} GFLOP/step")
        return
    rows, peak = report["variants"], max(report["roofline"].values())
    names = list(rows)
    base = names[1] if names[0] == "official" and len(names) > 1 else names[0]
    per = "wall second" if _wall_clock(args) else "CPU-second (per core)"
    print(
        f"\n{args.arch} UNet/VAE (random weights), {args.res}x{args.res}, batch {args.batch}, "
        f"UNet {args.dtype}, VAE {args.vae_dtype or args.dtype}, {_machine(args)}, allocator "
        f"{args.allocator}; {args.pairs} alternated runs of {args.steps} step(s) each"
    )
    best = max(report["roofline"], key=report["roofline"].get)
    print(f"best measured 3x3 conv: {peak:.0f} GFLOP per {per} ({best})")
    print(
        f"{'variant':<14}{'s/step':>9}{'CPU-s':>9}{'GFLOP':>9}{'GFLOP/s':>9}{'roofline':>9}"
        f"{'step MiB':>10}{'diff':>10}"
    )
    for name, r in rows.items():
        gf = r.get("gflop", float("nan"))
        mem = r.get("memory", {}).get("step_mib", float("nan"))
        rate = gf / (r["s_per_step"] if _wall_clock(args) else r["cpu_s_per_step"])
        diff = r["latent_rel_diff_vs_" + base]
        print(
            f"{name:<14}{r['s_per_step']:>9.3f}{r['cpu_s_per_step']:>9.3f}{gf:>9.0f}{rate:>9.0f}"
            f"{rate / peak:>9.0%}{mem:>10.0f}{diff:>10.1e}"
        )
    for name in names:
        if name == base:
            continue
        for key, label in (("runs", "wall"), ("cpu_runs", "CPU")):
            ratios = [a / b for a, b in zip(rows[name][key], rows[base][key], strict=True)]
            print(
                f"{name}/{base} ({label}): median of pairs {statistics.median(ratios):.2f}x "
                f"(per pair {', '.join(f'{r:.2f}' for r in ratios)})"
            )
    print(f"GFLOP/s: per {per}; diff: relative L2 difference of the final latent against {base}")


def scaling(args: argparse.Namespace) -> dict:
    """Ours at 256/384/512 (batch 1) and batch 1/2/4 (256), the low-memory mode and the official step for
    comparison: one fresh child process per row; memory on its first step, time on ``--steps`` warm
    steps after it. Exponents are fitted to the warm time (CPU seconds on CPU) and the step memory."""
    configs = [("ours", 256, 1), ("ours", 384, 1), ("ours", 512, 1), ("ours", 256, 2), ("ours", 256, 4)]
    configs += [("ours-lowmem", 512, 1), ("official", 256, 1)]
    if args.rows:  # variant:res:batch,...
        configs = [(v, int(r), int(b)) for v, r, b in (row.split(":") for row in args.rows.split(","))]
    rows = []
    for variant, res, batch in configs:
        r = _spawn(args, variant, warm=True, res=res, batch=batch)
        r["busy_s"] = r["warm_s"] if _wall_clock(args) else r["warm_cpu_s"]
        rows.append({"variant": variant, "res": res, "batch": batch, **r})
        print(f"row {variant} {res} {batch}: {json.dumps(r)}", file=sys.stderr)
    ours = [r for r in rows if r["variant"] == "ours"]
    side = [r for r in ours if r["batch"] == 1]
    batch_res = next((r["res"] for r in ours if r["batch"] > 1), None)  # the batch series' size
    batch = [r for r in ours if r["res"] == batch_res]
    fit = {}
    if len(side) >= 2:
        pixels = [r["res"] ** 2 for r in side]
        fit["time_vs_pixels"] = fit_exponent(pixels, [r["busy_s"] for r in side])
        fit["memory_vs_pixels"] = fit_exponent(pixels, [r["step_mib"] for r in side])
    if len(batch) >= 2:
        fit["time_vs_batch"] = fit_exponent([r["batch"] for r in batch], [r["busy_s"] for r in batch])
        fit["memory_vs_batch"] = fit_exponent([r["batch"] for r in batch], [r["step_mib"] for r in batch])
    return {"rows": rows, "exponents": fit, "roofline": roofline(args)}


def print_scaling(args: argparse.Namespace, report: dict) -> None:
    peak = max(report["roofline"].values())
    clock = "wall" if _wall_clock(args) else "CPU"
    print(
        f"\nscaling, {args.arch}, UNet {args.dtype}, {_machine(args)}, allocator {args.allocator}: a fresh "
        f"process per row; memory of its first step, time of {args.steps} warm step(s) after it; "
        f"roofline {peak:.0f} GFLOP/s ({clock} clock)"
    )
    print(
        f"{'variant':<13}{'size':>6}{'batch':>7}{'s/step':>9}{'CPU-s':>9}{'GFLOP':>8}{'roofline':>10}"
        f"{'step MiB':>10}{'maxrss MiB':>12}"
    )
    for r in report["rows"]:
        eff = r["gflop"] / r["busy_s"] / peak
        print(
            f"{r['variant']:<13}{r['res']:>6}{r['batch']:>7}{r['warm_s']:>9.2f}{r['warm_cpu_s']:>9.2f}"
            f"{r['gflop']:>8.0f}{eff:>10.0%}{r['step_mib']:>10.0f}"
            f"{r.get('maxrss_growth_mib', float('nan')):>12.0f}"
        )
    e = report["exponents"]
    if "time_vs_pixels" in e:
        print(f"fitted: time ~ pixels^{e['time_vs_pixels']:.2f}, memory ~ pixels^{e['memory_vs_pixels']:.2f}")
    if "time_vs_batch" in e:
        print(f"fitted: time ~ batch^{e['time_vs_batch']:.2f}, memory ~ batch^{e['memory_vs_batch']:.2f}")


def allocator_ab(args: argparse.Namespace) -> dict:
    """``--allocator keep`` against ``glibc``: ours in alternated fresh processes (A B A B ...), each
    timing ``--steps`` warm steps after a first one; reports the largest relative difference between
    their final latents (0 expected: the allocator changes no arithmetic)."""
    runs: dict[str, list[dict]] = {"glibc": [], "keep": []}
    for p in range(args.pairs):
        for alloc in runs:
            r = _spawn(args, "ours", warm=True, latent=True, allocator=alloc)
            runs[alloc].append(r)
            print(f"pair {p}: {alloc} {r['warm_s']:.2f} s/step {r['warm_cpu_s']:.2f} CPU-s", file=sys.stderr)
    latents = [torch.tensor(r.pop("latent")) for rs in runs.values() for r in rs]
    ref = latents[0]
    diff = max(float((z - ref).norm() / ref.norm()) for z in latents)
    out = {"runs": runs, "max_latent_rel_diff": diff}
    for key in ("warm_s", "warm_cpu_s"):
        out[f"ratio_{key}"] = [
            a[key] / b[key] for a, b in zip(runs["glibc"], runs["keep"], strict=True)
        ]  # fmt: skip
    return out


def print_allocator_ab(args: argparse.Namespace, report: dict) -> None:
    print(
        f"\n{args.arch}, {args.res}x{args.res}, batch {args.batch}, UNet {args.dtype}, {_machine(args)}: "
        f"glibc's default allocator against keep_freed_memory, {args.pairs} alternated pairs of fresh "
        f"processes, {args.steps} warm step(s) each"
    )
    for alloc, rs in report["runs"].items():
        print(
            f"{alloc:<6} s/step {statistics.median(r['warm_s'] for r in rs):8.2f}   "
            f"CPU-s/step {statistics.median(r['warm_cpu_s'] for r in rs):8.2f}   "
            f"minor faults/step {statistics.median(r['warm_faults'] for r in rs):10.0f}   "
            f"peak RSS MiB {statistics.median(r['peak_mib'] for r in rs):8.0f}"
        )
    for key, label in (("warm_s", "wall"), ("warm_cpu_s", "CPU")):
        ratios = report[f"ratio_{key}"]
        print(
            f"glibc/keep ({label}): median {statistics.median(ratios):.2f}x "
            f"(per pair {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(f"final latents, largest relative L2 difference between runs: {report['max_latent_rel_diff']:.1e}")


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
    p.add_argument(
        "--allocator",
        choices=("keep", "glibc"),
        default="keep",
        help="keep: psld.heap.keep_freed_memory (as the psld command); glibc: the C library's default",
    )
    p.add_argument("--allocator-ab", action="store_true", help="keep against glibc, alternated processes")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--latent", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.vae_dtype = args.vae_dtype or "fp32"
    if args.res % 8:
        p.error("--res must be a multiple of 8")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.allocator == "keep":
        from psld.heap import keep_freed_memory

        keep_freed_memory()
    if args.child:
        print(json.dumps(_child(args)))
        return 0
    if args.allocator_ab:
        run, show = allocator_ab, print_allocator_ab
    elif args.scaling:
        run, show = scaling, print_scaling
    else:
        run, show = compare, print_compare
    report = run(args)
    report["setup"] = {**vars(args), "machine": _machine(args), "torch": torch.__version__}
    show(args, report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
