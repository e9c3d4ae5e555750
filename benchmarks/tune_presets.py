"""Tune the built-in model's per-task weights on validation images, write psld_presets.json.

    python benchmarks/tune_presets.py --model fashion-mnist --steps 25 --out psld_presets.json

Validation images: Fashion-MNIST test indices 9100-9107 (disjoint from the benchmark's 0-99 and the
shipped 9000-9031). For each task: omega from OMEGAS by the mean PSNR of ldps (no gluing term), then
gamma = ratio * omega for psld from RATIOS (gml and psld share omega; the official launchers do too).
Prints every grid point, so the choice can be checked.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

OMEGAS = (0.1, 0.3, 1.0, 3.0)
RATIOS = (0.01, 0.1, 1.0)


def main() -> int:
    import psld
    from psld.evaluation.metrics import psnr_ssim
    from psld.presets import model_preset
    from psld.training.data import FASHION_MNIST_DIR, fashion_mnist_to_rgb, read_idx_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fashion-mnist")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--tasks", default="sr4,inpaint-box,inpaint-random,deblur-gaussian")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = psld.load_model(args.model, device="cpu")
    images = read_idx_images(f"{FASHION_MNIST_DIR}/t10k-images-idx3-ubyte.gz")[9100:9108]
    truth = (fashion_mnist_to_rgb(images, 64) + 1) / 2

    def score(task: str, method: str, omega: float, gamma: float) -> float:
        cfg = model_preset(model, task, method).replace(num_steps=args.steps, omega=omega, gamma=gamma)
        try:
            out = psld.solve(
                truth,
                task,
                model=model,
                simulate=True,
                seed=100,
                config=cfg,
                output_type="pt",
                progress=False,
            )
        except psld.DivergenceError:
            return float("-inf")
        return float(np.mean(psnr_ssim(out.images, truth)[0]))

    presets = {}
    for task in args.tasks.split(","):
        by_omega = {w: score(task, "ldps", w, 0.0) for w in OMEGAS}
        omega = max(by_omega, key=by_omega.get)
        by_ratio = {r: score(task, "psld", omega, r * omega) for r in RATIOS}
        ratio = max(by_ratio, key=by_ratio.get)
        print(
            task,
            "ldps omega:",
            {k: round(v, 2) for k, v in by_omega.items()},
            "psld gamma/omega:",
            {k: round(v, 2) for k, v in by_ratio.items()},
            flush=True,
        )
        presets[task] = {"omega": omega, "gamma": round(ratio * omega, 6), "num_steps": args.steps}
    with open(args.out, "w") as f:
        json.dump(presets, f, indent=2)
        f.write("\n")
    print(json.dumps(presets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
