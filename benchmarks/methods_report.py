"""Tables and a figure from one or more ``benchmarks/methods.py`` JSON files.

Each file is given a setting label (``recommended``, ``equal-time``, ...); several files may share a label
(for example the cheap methods on 16 images and an expensive one on 4). A method's row comes from the
file that holds it. The paired column is the mean of ``PSNR(method) - PSNR(reference)`` over the images
of that same file, where both saw the same ``y`` and the same random streams, with its 95% interval.

    python benchmarks/methods_report.py table recommended=rec_cheap.json recommended=rec_daps_sr4.json \\
        equal-time=eqtime.json
    python benchmarks/methods_report.py figure recommended=rec_cheap.json equal-time=eqtime.json \\
        --images rec --out docs/img/methods_comparison.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from psld.evaluation.metrics import t_ci95  # noqa: E402


def _parse(items: list[str]) -> list[tuple[str, dict]]:
    out = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"expected LABEL=FILE.json, got {item!r}")
        out.append((label, json.loads(Path(path).read_text())))
    return out


def collect(runs: list[tuple[str, dict]]) -> list[dict]:
    """One entry per (label, task, method): n, steps, PSNR/SSIM means and 95% CIs, seconds per image,
    cost against the file's reference, and the paired PSNR difference to the reference."""
    entries: dict[tuple[str, str, str], dict] = {}
    for label, run in runs:
        ref = run["reference"]
        rows = [r for r in run["rows"] if r.get("error") is None]
        by = {(r["task"], r["method"], r["image"]): r for r in rows}
        for s in run["summary"]:
            task, m = s["task"], s["method"]
            key = (label, task, m)
            if key in entries and m == ref and entries[key]["n"] >= s["n"]:
                continue  # the reference runs beside every method; keep its largest set
            mine = [r for r in rows if r["task"] == task and r["method"] == m]
            diffs = [
                r["psnr"] - by[(task, ref, r["image"])]["psnr"] for r in mine if (task, ref, r["image"]) in by
            ]
            entries[key] = {
                "label": label,
                "task": task,
                "method": m,
                "reference": ref,
                "steps": run["configs"][task][m].get("num_steps"),
                "n": s["n"],
                "failed": s["failed"],
                "psnr": s["psnr"],
                "psnr_ci95": s["psnr_ci95"],
                "ssim": s["ssim"],
                "ssim_ci95": s["ssim_ci95"],
                "seconds_per_image": s["seconds_per_image"],
                "cost_vs_ref": s["cost_vs_ref"],
                "cost_vs_ref_ci95": s["cost_vs_ref_ci95"],
                "paired_vs_ref": statistics.fmean(diffs) if diffs and m != ref else None,
                "paired_vs_ref_ci95": t_ci95(diffs) if m != ref else 0.0,
            }
    return list(entries.values())


def table(entries: list[dict]) -> str:
    lines = []
    for label in dict.fromkeys(e["label"] for e in entries):
        lines += [
            f"### {label}",
            "",
            "| task | method | steps | n | PSNR (dB) | SSIM | Δ PSNR vs reference, paired | s / image "
            "| cost vs reference |",
            "|---" * 9 + "|",
        ]
        for e in (e for e in entries if e["label"] == label):
            if e["psnr"] is None:
                lines.append(
                    f"| {e['task']} | {e['method']} | {e['steps']} | 0 ({e['failed']} failed) |" + " - |" * 5
                )
                continue
            paired = (
                "-"
                if e["paired_vs_ref"] is None
                else f"{e['paired_vs_ref']:+.2f} ± {e['paired_vs_ref_ci95']:.2f}"
            )
            cost = (
                "-" if e["cost_vs_ref"] is None else f"{e['cost_vs_ref']:.2f} ± {e['cost_vs_ref_ci95']:.2f}"
            )
            fail = f" ({e['failed']} failed)" if e["failed"] else ""
            lines.append(
                f"| {e['task']} | {e['method']} | {e['steps']} | {e['n']}{fail} | "
                f"{e['psnr']:.2f} ± {e['psnr_ci95']:.2f} | {e['ssim']:.3f} ± {e['ssim_ci95']:.3f} | "
                f"{paired} | "
                f"{e['seconds_per_image']:.3g} | {cost} |"
            )
        lines.append("")
    return "\n".join(lines)


def figure(
    entries: list[dict], out: str, images: str | None = None, image: str = "09000", truth: str | None = None
) -> None:
    """Left: PSNR against seconds per image (log), one panel per task, filled markers for the first
    label and hollow for the others. Right (with ``images``, a ``--save-dir`` of methods.py): the
    restorations of one image per task and method, after the ground truth ``truth/IMAGE.png`` if given.
    Written as a 256-colour PNG to keep it small."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    tasks = list(dict.fromkeys(e["task"] for e in entries))
    labels = list(dict.fromkeys(e["label"] for e in entries))
    methods = list(dict.fromkeys(e["method"] for e in entries))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    strips = []
    if images:
        for task in tasks:
            row = []
            if truth and (Path(truth) / f"{image}.png").is_file():
                row.append(("truth", np.asarray(Image.open(Path(truth) / f"{image}.png").convert("RGB"))))
            for m in methods:
                path = Path(images) / task / m / f"{image}.png"
                row.append((m, np.asarray(Image.open(path)) if path.is_file() else None))
            strips.append(row)
    ncols = 2 if strips else 1
    fig = plt.figure(figsize=(5.2 * ncols + 1, 3.3 * len(tasks)))
    grid = fig.add_gridspec(len(tasks), ncols, width_ratios=[1, 1.4][:ncols])
    for ti, task in enumerate(tasks):
        ax = fig.add_subplot(grid[ti, 0])
        for e in (e for e in entries if e["task"] == task and e["psnr"] is not None):
            filled = e["label"] == labels[0]
            ax.errorbar(
                e["seconds_per_image"],
                e["psnr"],
                yerr=e["psnr_ci95"],
                fmt="o" if filled else "s",
                color=colours[e["method"]],
                mfc=colours[e["method"]] if filled else "white",
                capsize=2,
                ms=6,
            )
            ax.annotate(
                e["method"],
                (e["seconds_per_image"], e["psnr"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (1 CPU thread)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(
            f"{task}: filled = {labels[0]}" + (f", hollow = {', '.join(labels[1:])}" if labels[1:] else ""),
            fontsize=8,
        )
        ax.grid(alpha=0.3)
        if strips:
            sub = grid[ti, 1].subgridspec(1, len(strips[ti]))
            for k, (m, img) in enumerate(strips[ti]):
                a = fig.add_subplot(sub[0, k])
                a.axis("off")
                if img is not None:
                    a.imshow(img)
                a.set_title(m, fontsize=7)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    Image.open(out).convert("RGB").quantize(256).save(out, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["table", "figure"])
    p.add_argument("runs", nargs="+", metavar="LABEL=FILE.json")
    p.add_argument("--out", default="methods_comparison.png", help="figure path")
    p.add_argument("--images", help="a methods.py --save-dir, for the restoration strips")
    p.add_argument("--image", default="09000", help="image stem shown in the strips")
    p.add_argument("--truth", help="folder holding the ground truth IMAGE.png, shown first in the strips")
    args = p.parse_args(argv)
    entries = collect(_parse(args.runs))
    if args.mode == "table":
        print(table(entries))
    else:
        figure(entries, args.out, args.images, args.image, args.truth)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
