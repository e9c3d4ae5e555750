"""Methods side by side: every method on the SAME measurements, quality with 95% CIs and cost per image.

For each (image, task) the operator and the noisy measurement ``y = A x + n`` are drawn from seeds
derived from ``(seed, image, task)`` (:func:`psld.evaluation.runner.entry_seed`, the rule of
``psld evaluate``), and the sampling generators from ``(seed, image, task, "sample")``, so every method
sees the same ``y`` and the same random streams. Images are solved ``--batch`` at a time (one
:func:`psld.sample` call per batch; a batch equals its single-image runs, per-image masks are stacked).

Cost: every batch runs all methods back to back, with ``psld`` first (A B C A B C ...), so the ratio
``seconds(method) / seconds(psld)`` taken within each batch pairs measurements made seconds apart and
cancels slow drifts of the machine's load. The table reports its mean and 95% CI over batches.

    python benchmarks/methods.py --model PATH --images builtin --n 16 --tasks sr4,inpaint-random \\
        --methods psld,resample,mpgd,stsl,daps,diffpir --batch 4 --json methods.json
    python benchmarks/methods.py --model PATH --steps 50 --set daps.langevin_steps=20 --set mpgd.omega=0.5

``--steps`` gives every method the same number of steps (annealing levels for DAPS); without it each
method runs its own default (docs/methods.md). ``--set METHOD.FIELD=VALUE`` changes one setting.
``--equal-time`` compares at equal wall time instead: on the first batch each method is timed at ``c``
and ``2c`` steps (``--calibration-steps``), which gives its fixed cost and its cost per step, and its step
count is set so that its modelled time per batch equals the reference method's at the reference's own
step count. A method whose fixed cost plus one step exceeds that budget runs 1 step and is flagged
(``fits: false``). The model is approximate for ReSample, whose consistency stages fall on a subset of
steps, and the table reports the seconds actually spent.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from psld.evaluation.metrics import t_ci95  # noqa: E402


def _parse_sets(items: list[str]) -> dict[str, dict]:
    """``["mpgd.omega=0.5", ...]`` -> ``{"mpgd": {"omega": 0.5}}`` (values parsed as JSON, else strings)."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, field = key.partition(".")
        if not (sep and dot and method and field):
            raise SystemExit(f"--set expects METHOD.FIELD=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[field] = parsed
    return out


def method_configs(methods, task: str, model, steps: int | None, sigma_y: float, sets: dict) -> dict:
    """The configuration of each method for ``task`` on ``model``: :func:`psld.presets.model_preset` (the
    task preset, the model's scheduler and its tuned presets; a registry method's own defaults), then
    ``--steps`` and ``--set``."""
    from psld.presets import model_preset

    configs = {}
    for m in methods:
        changes = dict(sets.get(m, {}))
        if steps is not None:
            changes.setdefault("num_steps", steps)
        if m == "diffpir":
            changes.setdefault("sigma_n", max(2.0 * sigma_y, 1e-3))
        base = model_preset(model, task, m)
        configs[m] = base.replace(**changes) if changes else base
    return configs


def _same(ops) -> bool:
    """Whether per-image operators act identically (checked on one random probe)."""
    probe = torch.randn(1, *ops[0].in_shape, generator=torch.Generator().manual_seed(0))
    ref = ops[0].forward(probe)
    return all(torch.equal(op.forward(probe), ref) for op in ops[1:])


def problem(task: str, x01: torch.Tensor, names: list[str], family: str, seed: int, sigma_y: float, sr_mode):
    """Batched operator(s), ``y`` in [-1, 1] and per-image sampling generators for a batch of images.
    Each image's operator and ``y`` are ``psld evaluate``'s (:func:`psld.evaluation.methods.simulate`)."""
    from psld.evaluation.methods import simulate
    from psld.evaluation.runner import entry_seed
    from psld.operators import MaskOperator

    ops, ys = [], []
    for b, name in enumerate(names):
        op, y_b, _ = simulate(
            task,
            x01[b : b + 1],
            seed=seed,
            image=name,
            sigma_y=sigma_y,
            sr_mode=sr_mode,
            size=x01.shape[-1],
            family=family,
        )
        ops.append(op)
        ys.append(y_b)
    y = torch.cat(ys)
    if len(ops) == 1:
        op = ops[0]
    elif all(isinstance(o, MaskOperator) and not o.batched for o in ops):
        op = MaskOperator(torch.stack([o.mask for o in ops]), ops[0].in_shape)
    elif _same(ops):
        op = ops[0]
    else:
        op = ops  # per-image operators (random motion kernels): one call per image
    gens = [torch.Generator().manual_seed(entry_seed(seed, n, task, "sample")) for n in names]
    return op, y, gens


def run_batch(model, op, y, gens, config, latent_shape) -> tuple[torch.Tensor, float]:
    """Restored images in [0, 1] and wall seconds (CUDA synchronised) for one batch."""
    from psld.sampler import sample

    def call(o, yy, gg):
        return sample(
            model.prior,
            model.encoder,
            model.decoder,
            o,
            yy,
            config=config,
            generator=gg,
            latent_shape=latent_shape,
        ).x

    sync = torch.cuda.synchronize if y.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    if isinstance(op, list):
        x = torch.cat([call(o, y[i : i + 1], [gens[i]]) for i, o in enumerate(op)])
    else:
        x = call(op, y, gens)
    sync()
    return ((x.float() + 1) / 2).clamp(0, 1).cpu(), time.perf_counter() - start


def _save_png(image01: np.ndarray, path: Path) -> None:
    """Write an HxWx3 image in [0, 1] as an 8-bit PNG (parents created)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(image01, 0, 1) * 255).astype(np.uint8)).save(path)


def allocate_steps(
    per_step: dict[str, float], fixed: dict[str, float], ref: str, ref_steps: int
) -> tuple[float, dict[str, int], dict[str, bool]]:
    """Budget ``fixed[ref] + per_step[ref] * ref_steps``; each method's steps
    ``max(1, round((budget - fixed) / per_step))``; ``fits`` when ``fixed + per_step <= budget``."""
    budget = fixed[ref] + per_step[ref] * ref_steps
    steps = {m: max(1, round((budget - fixed[m]) / per_step[m])) for m in per_step}
    steps[ref] = ref_steps
    fits = {m: fixed[m] + per_step[m] <= budget for m in per_step}
    return budget, steps, fits


def calibrate(model, methods, task, chunk, truths, args, sets, family) -> dict:
    """Steps per method for equal wall time with the reference (``methods[0]``) at its own steps.

    Each method's batch time is modelled as ``fixed + per_step * steps`` from two timed runs, at ``c``
    and ``2c`` steps (after a 1-step warm-up): ``per_step = (t(2c) - t(c)) / c``. Fixed costs (the final
    decode, ReSample's final latent fit) are then not spread over the steps. The budget is the
    reference's modelled time at its own steps; a method gets ``round((budget - fixed) / per_step)``
    steps, at least 1, and ``fits`` is False when even 1 step exceeds the budget.
    """
    names = [s.name for s in chunk]
    x01 = torch.stack([torch.from_numpy(truths[n]).permute(2, 0, 1) for n in names]).to(args.device)
    op, y, gens = problem(task, x01, names, family, args.seed, args.sigma_y, args.sr_mode)
    latent_shape = model.latent_shape(args.size, args.size)
    c = args.calibration_steps
    no_steps = {m: {k: v for k, v in kw.items() if k != "num_steps"} for m, kw in sets.items()}
    own = method_configs(methods[:1], task, model, args.steps, args.sigma_y, sets)[methods[0]]
    per_step, fixed = {}, {}
    for m in methods:
        probes = {n: method_configs([m], task, model, n, args.sigma_y, no_steps)[m] for n in (1, c, 2 * c)}
        run_batch(model, op, y, gens, probes[1], latent_shape)  # warm-up
        t1 = run_batch(model, op, y, gens, probes[c], latent_shape)[1]
        t2 = run_batch(model, op, y, gens, probes[2 * c], latent_shape)[1]
        per_step[m] = max(t2 - t1, 0.05 * t2) / c  # timing noise must not make a step free
        fixed[m] = max(t1 - per_step[m] * c, 0.0)
    budget, steps, fits = allocate_steps(per_step, fixed, methods[0], own.num_steps)
    return {
        "task": task,
        "seconds_per_step": per_step,
        "fixed_seconds": fixed,
        "budget_seconds": budget,
        "steps": steps,
        "fits": fits,
    }


def summarise(rows: list[dict], ratios: dict, methods, tasks) -> list[dict]:
    table = []
    for task in tasks:
        for m in methods:
            rs = [r for r in rows if r["task"] == task and r["method"] == m]
            ok = [r for r in rs if r["error"] is None]
            psnrs, ssims = [r["psnr"] for r in ok], [r["ssim"] for r in ok]
            rat = ratios.get((task, m), [])
            table.append(
                {
                    "task": task,
                    "method": m,
                    "n": len(ok),
                    "failed": len(rs) - len(ok),
                    "psnr": statistics.fmean(psnrs) if ok else None,
                    "psnr_ci95": t_ci95(psnrs),
                    "ssim": statistics.fmean(ssims) if ok else None,
                    "ssim_ci95": t_ci95(ssims),
                    "seconds_per_image": statistics.fmean([r["seconds"] for r in ok]) if ok else None,
                    "cost_vs_ref": statistics.fmean(rat) if rat else None,
                    "cost_vs_ref_ci95": t_ci95(rat),
                }
            )
    return table


def markdown(table: list[dict], ref: str) -> str:
    lines = [f"| task | method | n | PSNR (dB) | SSIM | s / image | cost vs {ref} |", "|---" * 7 + "|"]
    for e in table:
        if e["psnr"] is None:
            lines.append(f"| {e['task']} | {e['method']} | 0 | - | - | - | - |")
            continue
        cost = "-" if e["cost_vs_ref"] is None else f"{e['cost_vs_ref']:.2f} ± {e['cost_vs_ref_ci95']:.2f}"
        fail = f" ({e['failed']} failed)" if e["failed"] else ""
        lines.append(
            f"| {e['task']} | {e['method']} | {e['n']}{fail} | {e['psnr']:.2f} ± {e['psnr_ci95']:.2f} | "
            f"{e['ssim']:.3f} ± {e['ssim_ci95']:.3f} | {e['seconds_per_image']:.3g} | {cost} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="latent diffusers model folder or hub id")
    p.add_argument("--images", default="builtin", help="image folder, glob, file or 'builtin'")
    p.add_argument("--n", type=int, default=8, help="number of images (the first n, sorted)")
    p.add_argument("--tasks", default="sr4,inpaint-random", help="comma list of tasks")
    p.add_argument("--methods", default="psld,resample,mpgd,stsl,daps,diffpir", help="comma list of methods")
    p.add_argument("--steps", type=int, help="steps for every method (default: each method's own)")
    p.add_argument("--batch", type=int, default=4, help="images per sampler call")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--sigma-y", type=float, default=0.025, help="noise std in [0, 1] units")
    p.add_argument("--sr-mode", default="bicubic")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", help="UNet dtype (fp32, fp16, bf16); default as psld.load_model")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE")
    p.add_argument("--equal-time", action="store_true", help="choose each method's steps for equal wall time")
    p.add_argument("--calibration-steps", type=int, default=5, help="steps per method when calibrating")
    p.add_argument("--json", default="methods-benchmark.json", help="output JSON path")
    p.add_argument("--save-dir", help="also write each restoration to DIR/TASK/METHOD/IMAGE.png")
    args = p.parse_args(argv)

    import psld
    from psld.evaluation.datasets import load_image, resolve_images
    from psld.evaluation.metrics import psnr, ssim
    from psld.methods import ALL_METHODS
    from psld.sampler import DivergenceError

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [m for m in methods if m not in ALL_METHODS or m == "dps"]
    if unknown:
        raise SystemExit(f"unknown or non-latent method(s): {', '.join(unknown)}")
    ref = "psld" if "psld" in methods else methods[0]
    methods = [ref] + [m for m in methods if m != ref]  # the reference first in every batch
    sets = _parse_sets(args.set)
    model = psld.load_model(args.model, device=args.device, dtype=args.dtype)
    family = "ldm" if model.family == "pixel" else model.family
    sources = resolve_images(args.images)[: args.n]
    truths = {s.name: load_image(s, args.size).astype(np.float32) / 255.0 for s in sources}
    latent_shape = model.latent_shape(args.size, args.size)

    rows: list[dict] = []
    ratios: dict[tuple[str, str], list[float]] = {}
    configs_used = {}
    calibration = None
    if args.equal_time:
        calibration = calibrate(model, methods, tasks[0], sources[: args.batch], truths, args, sets, family)
        for m, n in calibration["steps"].items():
            sets.setdefault(m, {})["num_steps"] = n
    for task in tasks:
        configs = method_configs(methods, task, model, args.steps, args.sigma_y, sets)
        configs_used[task] = {m: c.to_dict() for m, c in configs.items()}
        for start in range(0, len(sources), args.batch):
            chunk = sources[start : start + args.batch]
            names = [s.name for s in chunk]
            x01 = torch.stack([torch.from_numpy(truths[n]).permute(2, 0, 1) for n in names]).to(args.device)
            op, y, gens = problem(task, x01, names, family, args.seed, args.sigma_y, args.sr_mode)
            seconds = {}
            for m in methods:
                try:
                    x, sec = run_batch(model, op, y, gens, configs[m], latent_shape)
                    err = None
                except DivergenceError as e:
                    x, sec, err = None, float("nan"), str(e)
                seconds[m] = sec
                for b, name in enumerate(names):
                    row = {
                        "image": name,
                        "task": task,
                        "method": m,
                        "seconds": sec / len(names),
                        "error": err,
                    }
                    if x is not None:
                        res = x[b].permute(1, 2, 0).numpy()
                        row.update(psnr=psnr(res, truths[name]), ssim=ssim(res, truths[name]))
                        if args.save_dir:
                            _save_png(res, Path(args.save_dir) / task / m / f"{Path(name).stem}.png")
                    rows.append(row)
                print(f"{task} {m} images {start}-{start + len(names) - 1}: {sec:.3g} s", file=sys.stderr)
            for m in methods:
                if math.isfinite(seconds[m]) and math.isfinite(seconds[ref]) and seconds[ref] > 0:
                    ratios.setdefault((task, m), []).append(seconds[m] / seconds[ref])

    table = summarise(rows, ratios, methods, tasks)
    print(markdown(table, ref))
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    info = {
        "settings": {k: v for k, v in vars(args).items()},
        "reference": ref,
        "device": str(args.device),
        "cuda": torch.cuda.get_device_name() if str(args.device).startswith("cuda") else None,
        "cpu": platform.processor() or platform.machine(),
        "loadavg": load,
        "configs": configs_used,
        "equal_time_calibration": calibration,
        "summary": table,
        "rows": rows,
    }
    Path(args.json).write_text(json.dumps(info, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
