"""The ``psld train`` subcommand (registered by :mod:`psld.cli`).

``psld train --data fashion-mnist|FOLDER|IDX --autoencoder AE -o OUT [--steps N] [--batch-size B] ...
[--resume] [--bf16]``; see :func:`psld.train`. ``accelerate launch -m psld train ...`` spreads each batch
over N processes with the same result as one.
"""

from __future__ import annotations

import argparse
import shlex
import sys

__all__ = ["add_train_parser", "run_train"]


def _number(kind: type):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    return parse


def _channels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_train_parser(sub) -> None:
    """Add the ``train`` subparser to ``sub`` (an argparse subparsers action)."""
    from psld.training.config import TrainConfig

    d = TrainConfig()
    t = sub.add_parser("train", help="train a latent diffusion prior on a frozen autoencoder")
    t.add_argument("--data", required=True, help="'fashion-mnist', an idx file, or an image folder")
    t.add_argument("--autoencoder", required=True, help="diffusers AutoencoderKL/Tiny folder or TAESD files")
    t.add_argument("-o", "--out", required=True, help="output model folder")
    t.add_argument("--size", type=_number(int), default=d.size, help=f"image side in px (default {d.size})")
    t.add_argument("--steps", type=_number(int), default=d.steps, help=f"optimiser steps (default {d.steps})")
    t.add_argument("--batch-size", type=_number(int), default=d.batch_size, help=f"default {d.batch_size}")
    t.add_argument("--lr", type=_number(float), default=d.learning_rate, help=f"default {d.learning_rate:g}")
    t.add_argument("--warmup", type=_number(int), default=d.warmup_steps, help=f"default {d.warmup_steps}")
    t.add_argument("--ema-decay", type=_number(float), default=d.ema_decay, help=f"default {d.ema_decay}")
    t.add_argument(
        "--channels",
        type=_channels,
        default=d.block_out_channels,
        help="UNet block channels, e.g. 32,64,128 (default)",
    )
    t.add_argument("--layers-per-block", type=_number(int), default=d.layers_per_block)
    t.add_argument("--checkpoint-every", type=_number(int), default=d.checkpoint_every)
    t.add_argument("--max-images", type=_number(int), help="use only the first N training images")
    t.add_argument("--seed", type=_number(int), default=d.seed)
    t.add_argument("--bf16", action="store_true", help="bf16 autocast for the UNet")
    t.add_argument("--fp16", action="store_true", help="save the weights in fp16 (half the size)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint after a stop")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_train(args: argparse.Namespace) -> int:
    """Run ``psld train``; bad input raises ``ValueError`` (one line, exit 2, in :func:`psld.cli.main`)."""
    from psld.training.config import TrainConfig
    from psld.training.loop import train

    config = TrainConfig(
        size=args.size,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=args.warmup,
        ema_decay=args.ema_decay,
        block_out_channels=args.channels,
        layers_per_block=args.layers_per_block,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        bf16=args.bf16,
        max_images=args.max_images,
    )
    command = "psld " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    result = train(
        args.data,
        args.autoencoder,
        args.out,
        config=config,
        resume=args.resume,
        progress=not args.no_progress,
        command=command,
        export_dtype="fp16" if args.fp16 else "fp32",
    )
    print(
        f"trained {result.steps} steps in {result.seconds / 60:.1f} min "
        f"({result.images_per_second:.0f} images/s), "
        f"final loss {result.final_loss:.4f}; wrote {result.out}"
    )
    return 0
