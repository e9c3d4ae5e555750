"""Train the garment classifier shipped beside the built-in model (psld.perceptual).

    python benchmarks/train_classifier.py --out psld/models/builtin/fashion-mnist-classifier

Fashion-MNIST train set (system package dataset-fashion-mnist), 3 epochs of Adam (lr 1e-3, batch 128),
each image passed through the 28 -> 64 -> 28 round trip the restorations take; prints the test accuracy
and writes it to the folder's README.md with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from psld.perceptual import GarmentClassifier, to_input
from psld.training.data import FASHION_MNIST_DIR, fashion_mnist_to_rgb, read_idx_images


def _labels(path: Path) -> torch.Tensor:
    import gzip

    raw = gzip.open(path).read()
    return torch.frombuffer(bytearray(raw[8:]), dtype=torch.uint8).long()


def _inputs(images) -> torch.Tensor:
    out = []
    for start in range(0, len(images), 2000):
        out.append(to_input((fashion_mnist_to_rgb(images[start : start + 2000], 64) + 1) / 2))
    return torch.cat(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(FASHION_MNIST_DIR)
    x_train = _inputs(read_idx_images(root / "train-images-idx3-ubyte.gz"))
    y_train = _labels(root / "train-labels-idx1-ubyte.gz")
    x_test = _inputs(read_idx_images(root / "t10k-images-idx3-ubyte.gz"))
    y_test = _labels(root / "t10k-labels-idx1-ubyte.gz")
    torch.manual_seed(args.seed)
    model = GarmentClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_train), generator=g)
        for start in range(0, len(order), 128):
            idx = order[start : start + 128]
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: last loss {loss.item():.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_test[s : s + 1000]).argmax(1) for s in range(0, len(x_test), 1000)])
    accuracy = float((pred == y_test).float().mean())
    minutes = (time.perf_counter() - t0) / 60
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(
        {k: v.half().contiguous() for k, v in model.state_dict().items()}, str(out / "classifier.safetensors")
    )
    # the shipped weights are fp16: measure the accuracy of what ships
    from psld.perceptual import load_classifier

    shipped = load_classifier(out / "classifier.safetensors")
    with torch.no_grad():
        pred16 = torch.cat([shipped(x_test[s : s + 1000]).argmax(1) for s in range(0, len(x_test), 1000)])
    acc16 = float((pred16 == y_test).float().mean())
    (out / "metrics.json").write_text(
        json.dumps({"test_accuracy_fp16": acc16, "test_accuracy_fp32": accuracy}) + "\n"
    )
    (out / "README.md").write_text(
        "# Garment classifier (perceptual metric of the built-in model)\n\n"
        "`psld.perceptual.GarmentClassifier`, trained on the 60,000 Fashion-MNIST training images "
        f"(MIT licence) for {args.epochs} epochs (Adam, lr 1e-3, batch 128, seed {args.seed}), "
        f"{minutes:.1f} min on a CPU.\n\n"
        f"Test accuracy on the 10,000 test images: **{acc16:.4f}** (fp16 weights as shipped; "
        f"fp32 {accuracy:.4f}).\n\n"
        f"Command: `python {' '.join(sys.argv)}`\n"
    )
    print(f"test accuracy {acc16:.4f} (fp16), {accuracy:.4f} (fp32); {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
