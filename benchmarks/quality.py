"""Restoration quality of the built-in model on held-out Fashion-MNIST test images.

    python benchmarks/quality.py main  --n 100 --steps 25 --tasks sr4,inpaint-box --out q-main-a.json
    python benchmarks/quality.py sweep --n 16 --tasks sr4,inpaint-box --step-list 10,25,50 --out q-sweep.json
    python benchmarks/quality.py report q-main-*.json q-sweep.json > docs/results.md

Images: Fashion-MNIST test indices 0..n-1 (system package dataset-fashion-mnist), preprocessed as for
training (bilinear 28 -> 64, gray -> RGB); ground truth is that float image. Each batch of ``--batch``
images is one :func:`psld.demo.restore_set` call per task, image ``i`` seeded ``seed + i``, so every
method sees the same ``y``. Per image: PSNR, SSIM, residual ``||y - A x|| / ||y||``, the garment
classifier's prediction; per (task, method): class accuracy and the Frechet distance to the clean
images in the classifier's feature space. Ceilings: ``ae`` = D(E(x)) of the clean image, ``ae+dc`` =
``A^+ y + (I - A^+ A) D(E(x))`` (the autoencoder's best, made consistent with y).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from psld.evaluation.metrics import psnr_ssim
from psld.training.data import FASHION_MNIST_DIR, fashion_mnist_to_rgb, read_idx_images

METHODS = ("psld", "gml", "ldps", "pinv")


def _test_set(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    import gzip

    images = read_idx_images(Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz")[:n]
    labels = gzip.open(Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz").read()[8 : 8 + n]
    return (fashion_mnist_to_rgb(images, 64) + 1) / 2, torch.tensor(list(labels))


def _residual(op, x01: torch.Tensor, measurement01: torch.Tensor) -> list[float]:
    with torch.no_grad():
        y = measurement01 * 2 - 1
        r = (y - op.forward(x01 * 2 - 1)).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1).clamp_min(1e-12)
    return r.tolist()


def _masks(op, batch: int) -> torch.Tensor:
    """The operator's masks as ``[batch, 1, H, W]`` (a shared ``[H, W]`` mask repeated)."""
    m = op.mask.float().reshape(-1, 1, *op.mask.shape[-2:])
    return m.expand(batch, -1, -1, -1) if m.shape[0] == 1 else m


def _box_band(op, width: int = 3, batch: int = 1) -> torch.Tensor | None:
    """Unobserved pixels within ``width`` px of an observed one (``[B, 1, H, W]`` bool), masks only."""
    if getattr(op, "mask", None) is None:
        return None
    m = _masks(op, batch)
    near = torch.nn.functional.max_pool2d(m, 2 * width + 1, stride=1, padding=width) > 0
    return near & (m == 0)


def run_main(args) -> dict:
    import psld
    from psld.demo import restore_set
    from psld.perceptual import load_classifier, to_input
    from psld.presets import model_preset

    torch.set_num_threads(1)
    model = psld.load_model(args.model, device="cpu")
    clf = load_classifier()
    truth, labels = _test_set(args.n)
    rows, feats = [], {}
    with torch.no_grad():
        feats["clean"] = clf.features(to_input(truth)).numpy()
        clean_pred = clf(to_input(truth)).argmax(1)
        ae = ((model.decoder(model.encoder(truth * 2 - 1)) + 1) / 2).clamp(0, 1)
        feats["ae"] = clf.features(to_input(ae)).numpy()
    for task in args.tasks:
        for start in range(0, args.n, args.batch):
            stop = min(args.n, start + args.batch)
            x = truth[start:stop]
            t0 = time.perf_counter()
            restored, meas, op = restore_set(
                model, x, task, tuple(args.methods), seed=args.seed + start, steps=args.steps
            )
            seconds = (time.perf_counter() - t0) / (stop - start)
            with torch.no_grad():
                ae_b = ae[start:stop]
                dc = ((op.glue(ae_b * 2 - 1, meas * 2 - 1, "pinv") + 1) / 2).clamp(0, 1)
            band = _box_band(op, batch=stop - start) if task == "inpaint-box" else None
            for method, xr in {**restored, "ae": ae_b, "ae+dc": dc}.items():
                p, s = psnr_ssim(xr, x)
                res = _residual(op, xr, meas)
                with torch.no_grad():
                    pred = clf(to_input(xr)).argmax(1)
                    f = clf.features(to_input(xr)).numpy()
                feats.setdefault(f"{task}/{method}", []).append(f)
                for i in range(stop - start):
                    row = dict(
                        task=task,
                        method=method,
                        index=start + i,
                        psnr=p[i],
                        ssim=s[i],
                        residual=res[i],
                        correct=bool(pred[i] == labels[start + i]),
                        steps=args.steps,
                    )
                    if band is not None:
                        err = (xr[i] - x[i]).pow(2).mean(0, keepdim=True)
                        b, inner = band[i], (_masks(op, stop - start)[i] == 0) & ~band[i]
                        row["psnr_edge"] = float(-10 * math.log10(err[b].mean().clamp_min(1e-12)))
                        row["psnr_inner"] = float(-10 * math.log10(err[inner].mean().clamp_min(1e-12)))
                    rows.append(row)
            print(
                f"{task} {start}-{stop}: {seconds:.1f} s/image (all methods), load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    from psld.perceptual import frechet_distance

    fd = {
        k: frechet_distance(np.concatenate(v), feats["clean"])
        for k, v in feats.items()
        if isinstance(v, list)
    }
    fd["ae"] = frechet_distance(feats["ae"], feats["clean"])
    return dict(
        kind="main",
        n=args.n,
        steps=args.steps or {t: model_preset(model, t).num_steps for t in args.tasks},
        seed=args.seed,
        rows=rows,
        frechet=fd,
        clean_accuracy=float((clean_pred == labels).float().mean()),
        load=os.getloadavg()[0],
    )


def run_sweep(args) -> dict:
    import psld
    from psld.demo import restore_set

    torch.set_num_threads(1)
    model = psld.load_model(args.model, device="cpu")
    truth, _ = _test_set(args.n)
    rows = []
    for steps in args.step_list:
        for task in args.tasks:
            for start in range(0, args.n, args.batch):
                stop = min(args.n, start + args.batch)
                t0 = time.perf_counter()
                restored, _, _ = restore_set(
                    model, truth[start:stop], task, tuple(args.methods), seed=args.seed + start, steps=steps
                )
                seconds = (time.perf_counter() - t0) / (stop - start) / len(args.methods)
                for method, xr in restored.items():
                    p, s = psnr_ssim(xr, truth[start:stop])
                    rows += [
                        dict(
                            task=task,
                            method=method,
                            index=start + i,
                            steps=steps,
                            psnr=p[i],
                            ssim=s[i],
                            seconds=seconds,
                        )
                        for i in range(stop - start)
                    ]
                print(
                    f"{steps} steps {task} {start}-{stop}: {seconds:.2f} s/image/method, "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    return dict(kind="sweep", n=args.n, seed=args.seed, rows=rows)


def _ci(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0


def report(paths: list[str]) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    out = []
    mains = [r for r in runs if r["kind"] == "main"]
    if mains:
        rows = [row for r in mains for row in r["rows"]]
        fd = {k: v for r in mains for k, v in r["frechet"].items()}
        n = mains[0]["n"]
        steps = sorted(
            {
                v
                for r in mains
                for v in (r["steps"].values() if isinstance(r["steps"], dict) else [r["steps"]])
            }
        )
        out.append(
            f"### Main table: {n} test images, {'/'.join(map(str, steps))} DDIM steps (mean ± 95% CI)\n"
        )
        out.append("| task | method | PSNR (dB) | SSIM | residual | class acc. | Fréchet dist. |")
        out.append("|---|---|---|---|---|---|---|")
        for task in dict.fromkeys(r["task"] for r in rows):
            for method in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
                sel = [r for r in rows if r["task"] == task and r["method"] == method]
                (p, pc), (s, sc), (res, _) = (_ci([r[k] for r in sel]) for k in ("psnr", "ssim", "residual"))
                acc = np.mean([r["correct"] for r in sel])
                out.append(
                    f"| {task} | {method} | {p:.2f} ± {pc:.2f} | {s:.3f} ± {sc:.3f} | {res:.3f} | "
                    f"{acc:.2f} | {fd.get(f'{task}/{method}', float('nan')):.1f} |"
                )
        out.append(
            f"\nClean images: class accuracy {mains[0]['clean_accuracy']:.2f}; "
            f"autoencoder alone: Fréchet distance {fd['ae']:.1f}.\n"
        )
        out.append("### Paired difference psld − ldps (dB, mean ± 95% CI over images)\n")
        out.append("| task | whole image | box edge band (3 px) | box interior |")
        out.append("|---|---|---|---|")
        for task in dict.fromkeys(r["task"] for r in rows):
            by = {(r["method"], r["index"]): r for r in rows if r["task"] == task}
            idx = sorted(i for m, i in by if m == "psld" and ("ldps", i) in by)
            if not idx:
                continue
            cells = []
            for key in ("psnr", "psnr_edge", "psnr_inner"):
                if key in by["psld", idx[0]]:
                    m, c = _ci([by["psld", i][key] - by["ldps", i][key] for i in idx])
                    cells.append(f"{m:+.2f} ± {c:.2f}")
                else:
                    cells.append("—")
            out.append(f"| {task} | " + " | ".join(cells) + " |")
    for r in (r for r in runs if r["kind"] == "sweep"):
        out.append(f"\n### Steps sweep: {r['n']} test images (mean PSNR ± 95% CI; seconds per image)\n")
        out.append("| task | method | steps | PSNR (dB) | SSIM | s/image |")
        out.append("|---|---|---|---|---|---|")
        keys = dict.fromkeys((x["task"], x["method"], x["steps"]) for x in r["rows"])
        for task, method, steps in keys:
            sel = [x for x in r["rows"] if (x["task"], x["method"], x["steps"]) == (task, method, steps)]
            (p, pc), (s, _) = _ci([x["psnr"] for x in sel]), _ci([x["ssim"] for x in sel])
            out.append(
                f"| {task} | {method} | {steps} | {p:.2f} ± {pc:.2f} | {s:.3f} | "
                f"{np.mean([x['seconds'] for x in sel]):.2f} |"
            )
    return "\n".join(out) + "\n"


def figure(paths: list[str], out: str) -> None:
    """PSNR (mean ± 95% CI) against DDIM steps per task, log-x, with the seconds per image on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        x for p in paths for r in [json.loads(Path(p).read_text())] if r["kind"] == "sweep" for x in r["rows"]
    ]
    fig, ax = plt.subplots(figsize=(5.2, 3.2), dpi=120)
    for task in dict.fromkeys(x["task"] for x in rows):
        steps = sorted({x["steps"] for x in rows if x["task"] == task})
        stats = [_ci([x["psnr"] for x in rows if x["task"] == task and x["steps"] == s]) for s in steps]
        counts = [sum(1 for x in rows if x["task"] == task and x["steps"] == s) for s in steps]
        ax.errorbar(
            steps, [m for m, _ in stats], yerr=[c for _, c in stats], marker="o", capsize=3, label=task
        )
        for s, (m, _), n in zip(steps, stats, counts, strict=True):
            if n < max(counts):
                ax.annotate(f"n={n}", (s, m), textcoords="offset points", xytext=(4, -10), fontsize=7)
    secs = {}
    for x in rows:
        secs.setdefault(x["steps"], []).append(x["seconds"])
    ax.set(xscale="log", xlabel="DDIM steps", ylabel="PSNR (dB)")
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        sorted(secs),
        [
            f"{np.mean(secs[s]):.0f}s" if np.mean(secs[s]) >= 10 else f"{np.mean(secs[s]):.1f}s"
            for s in sorted(secs)
        ],
        fontsize=7,
    )
    top.set_xlabel("seconds per image (psld, 1 CPU thread)", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    for name in ("main", "sweep"):
        p = sub.add_parser(name)
        p.add_argument("--model", default="fashion-mnist")
        p.add_argument("--n", type=int, default=100)
        p.add_argument(
            "--tasks",
            type=lambda s: s.split(","),
            default=["sr4", "inpaint-box", "inpaint-random", "deblur-gaussian"],
        )
        p.add_argument(
            "--methods", type=lambda s: s.split(","), default=list(METHODS) if name == "main" else ["psld"]
        )
        p.add_argument("--batch", type=int, default=4)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", required=True)
        if name == "main":
            p.add_argument("--steps", type=int, default=None)
        else:
            p.add_argument(
                "--step-list", type=lambda s: [int(v) for v in s.split(",")], default=[10, 25, 50, 100]
            )
    r = sub.add_parser("report")
    r.add_argument("inputs", nargs="+")
    f = sub.add_parser("figure")
    f.add_argument("inputs", nargs="+")
    f.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.kind == "report":
        print(report(args.inputs), end="")
        return 0
    if args.kind == "figure":
        figure(args.inputs, args.out)
        return 0
    result = run_main(args) if args.kind == "main" else run_sweep(args)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result) + "\n")
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
