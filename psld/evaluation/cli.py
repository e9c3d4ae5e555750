"""The ``psld evaluate`` subcommand (registered by :mod:`psld.cli`).

``psld evaluate --images DIR|GLOB|builtin -t TASK [-t TASK ...] --methods psld,gml,ldps[,dps][,pinv]
--model MODEL [--pixel-model PMODEL] [--size PX] [--steps N] [--seed S] [--preset improved|official]
[--omega W --gamma G --sigma-y S] -o OUT``; see :func:`psld.evaluate`. Run it under
``accelerate launch --num_processes N -m psld evaluate ...`` to spread the entries over N processes.
"""

from __future__ import annotations

import argparse

__all__ = ["add_evaluate_parser", "run_evaluate"]


def _integer(text: str) -> int:
    """An integer; its range is checked by :func:`psld.evaluation.checks.check_inputs` (one message)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _number(text: str) -> float:
    """A number (``inf``/``nan`` parse, and are refused by the one check in ``check_inputs``)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_evaluate_parser(sub) -> None:
    """Add the ``evaluate`` subparser to ``sub`` (an argparse subparsers action)."""
    e = sub.add_parser("evaluate", help="evaluate tasks x methods on an image set (metrics, tables, figures)")
    e.add_argument("--images", required=True, help="'builtin', an image folder, a glob pattern or one file")
    e.add_argument("-t", "--task", action="append", required=True, dest="tasks", help="task (repeatable)")
    e.add_argument(
        "--methods",
        default="psld,ldps,pinv",
        help="comma list of psld,gml,ldps,dps,pinv,resample,mpgd,stsl,daps,diffpir",
    )
    e.add_argument("--model", help="latent diffusers model folder or hub id (psld, gml, ldps)")
    e.add_argument("--pixel-model", help="pixel-space UNet2DModel + scheduler folder or hub id (dps)")
    e.add_argument("--size", type=_integer, default=256, help="image side in pixels (default 256)")
    e.add_argument("--resize", default="crop", help="crop (centre crop + resize) or nearest-up")
    e.add_argument("--steps", type=_integer, help="DDIM steps (default: task preset)")
    e.add_argument("--seed", type=_integer, default=0, help="base seed (default 0)")
    e.add_argument("--preset", default="improved", help="improved (default) or official")
    e.add_argument("--omega", type=_number, help="measurement weight (default: task preset)")
    e.add_argument("--gamma", type=_number, help="gluing weight (default: task preset)")
    e.add_argument("--sigma-y", type=_number, default=0.025, help="noise std in [0, 1] units")
    e.add_argument("--sr-mode", default="bicubic", help="super-resolution operator: bicubic or average")
    e.add_argument("--device", help="torch device (default: accelerate's, else cuda if available, else cpu)")
    e.add_argument("--dtype", help="UNet dtype: fp32, fp16 or bf16")
    e.add_argument("-o", "--out", required=True, help="output folder")
    e.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``psld evaluate``; bad input raises ``ValueError`` (one line, exit 2, in :func:`psld.cli.main`)."""
    from psld.console import quiet_libraries
    from psld.evaluation.runner import evaluate

    quiet_libraries()
    result = evaluate(
        args.images,
        args.tasks,
        model=args.model,
        methods=args.methods,
        pixel_model=args.pixel_model,
        out=args.out,
        size=args.size,
        resize=args.resize,
        steps=args.steps,
        seed=args.seed,
        preset=args.preset,
        omega=args.omega,
        gamma=args.gamma,
        sigma_y=args.sigma_y,
        sr_mode=args.sr_mode,
        device=args.device,
        dtype=args.dtype,
        progress=not args.no_progress,
    )
    if _is_main():
        print(result.to_markdown(), end="")
        print(f"wrote {result.out}/results.jsonl, summary.md, summary.csv, figures/")
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
