"""The ``psld`` command.

``psld restore INPUT -t TASK --model MODEL [...]``
    Restore an image (real use: INPUT is the degraded observation; ``--simulate``: INPUT is a clean
    image that is degraded first) and write the result plus a side-by-side comparison
    (input | measurement | result) into ``-o OUT`` (default ``psld-out/``).
``psld tasks``
    List the tasks with their default presets (steps, omega, gamma) for SD and LDM models.
``psld verify [--quick | --thorough] [--out DIR] [--seed N] [--only NAME ...]``
    Run the theory checks (``verification.report.run_verify``); the exit code is its result.
``psld evaluate --images DIR|GLOB|builtin -t TASK ... --methods ... -o OUT``
    Tasks x methods over an image set: metrics, summary, figures, resume (:mod:`psld.evaluation.cli`).

``psld --version``
    Print the version.

Bad input (missing or non-image file, wrong mask size, a mask observing no pixel, unknown task,
missing model, a device this machine lacks, non-finite numbers, an output folder that cannot be written,
existing outputs without ``--overwrite``, ...) prints one line ``psld: error: ...`` to stderr and exits
with status 2 before the model is loaded and before anything is written; a diverged run (non-finite
latents) does the same after sampling. Outputs are written to temporary names in the output folder and
renamed into place, so an interrupted run (SIGINT/SIGTERM) leaves no partial file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from psld import validation
from psld.console import Parser, UsageError, quiet_libraries
from psld.files import check_writable_folder, write_atomically
from psld.validation import argtype

__all__ = ["main", "build_parser"]

#: the name psld.evaluation.cli used before psld.console held it (kept for one release)
_quiet_libraries = quiet_libraries


# ---------------------------------------------------------------------------------------------- parsers
def _add_restore(sub) -> None:
    r = sub.add_parser("restore", help="restore an image with a latent diffusion prior")
    r.add_argument(
        "input", metavar="INPUT", help="image file (the degraded observation, or clean with --simulate)"
    )
    r.add_argument("-t", "--task", required=True, help="task name (see `psld tasks`)")
    r.add_argument("--model", required=True, help="diffusers model folder or hub id")
    r.add_argument("--mask", help="mask image for inpainting (white = observed, black = missing; no gray)")
    r.add_argument("--kernel", help="blur kernel as a .npy array (deblurring), applied as a true convolution")
    r.add_argument(
        "--kernel-correlate",
        action="store_true",
        help="apply --kernel as a correlation (conv2d, the official code's convention) instead",
    )
    r.add_argument("--simulate", action="store_true", help="INPUT is clean: simulate the measurement first")
    r.add_argument("-o", "--out", default="psld-out", help="output folder (default: psld-out/)")
    r.add_argument("--overwrite", action="store_true", help="replace existing output files")
    r.add_argument(
        "--method",
        help="solver: psld (default), gml, ldps, resample, mpgd, stsl, daps or diffpir (docs/methods.md)",
    )
    r.add_argument(
        "--steps",
        type=argtype(validation.positive_int),
        help=f"number of DDIM steps, at most {validation.MAX_STEPS} (default: task preset)",
    )
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    number = argtype(validation.finite_number, minimum=0.0)
    r.add_argument("--omega", type=number, help="measurement weight (default: task preset)")
    r.add_argument("--gamma", type=number, help="gluing weight (default: task preset)")
    r.add_argument(
        "--sigma-y", type=number, help="with --simulate: noise std in [0, 1] units (default 0.025)"
    )
    r.add_argument(
        "--sr-mode",
        default="bicubic",
        type=argtype(validation.sr_mode),
        help="super-resolution operator: bicubic or average",
    )
    r.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    r.add_argument("--dtype", help="UNet dtype: fp32, fp16 or bf16 (default: fp16 on cuda, fp32 on cpu)")
    r.add_argument("--low-memory", action="store_true", help="checkpoint UNet/VAE blocks: less memory")
    r.add_argument(
        "--allow-large",
        action="store_true",
        help="run even when the estimated memory exceeds what the device has free",
    )
    r.add_argument("--prompt", default="", help="text prompt for Stable Diffusion models (default empty)")
    r.add_argument("--no-paste", action="store_true", help="do not paste the observed pixels (inpainting)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_tasks(sub) -> None:
    sub.add_parser("tasks", help="list the tasks and their default presets")


def _add_verify(sub) -> None:
    v = sub.add_parser("verify", help="run the theory verification report")
    level = v.add_mutually_exclusive_group()
    level.add_argument("--quick", action="store_true", help="fast subset of the checks")
    level.add_argument("--thorough", action="store_true", help="more examples and sizes")
    v.add_argument("--out", help="folder for the report")
    v.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    v.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks")


def _add_demo(sub) -> None:
    d = sub.add_parser("demo", help="restore shipped Fashion-MNIST test images with the built-in model")
    d.add_argument("-o", "--out", default="psld-demo", help="output folder (default: psld-demo/)")
    d.add_argument(
        "--n",
        type=argtype(validation.positive_int),
        default=4,
        help="number of test images (default 4, at most 32)",
    )
    d.add_argument(
        "--steps",
        type=argtype(validation.positive_int),
        help="DDIM steps (default: the model's tuned preset)",
    )
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_train(sub) -> None:
    from psld.training.cli import add_train_parser

    add_train_parser(sub)


def _add_evaluate(sub) -> None:
    from psld.evaluation.cli import add_evaluate_parser

    add_evaluate_parser(sub)


#: the subcommands in help order: name -> (add its parser, run it); a new command adds one line here
def _commands() -> dict[str, tuple[Callable, Callable[[argparse.Namespace], int]]]:
    return {
        "restore": (_add_restore, _cmd_restore),
        "tasks": (_add_tasks, _cmd_tasks),
        "verify": (_add_verify, _cmd_verify),
        "evaluate": (_add_evaluate, _cmd_evaluate),
        "demo": (_add_demo, _cmd_demo),
        "train": (_add_train, _cmd_train),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="psld", description="Posterior sampling with latent diffusion (PSLD).")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add, _ in _commands().values():
        add(sub)
    return parser


# ---------------------------------------------------------------------------------------------- commands
def _cmd_tasks(args: argparse.Namespace) -> int:
    from psld.config import PSLDConfig
    from psld.tasks import TASKS

    print(f"{'task':<16} {'sd: steps omega gamma':<24} {'ldm: steps omega gamma':<25} description")
    for name, task in TASKS.items():
        cols = []
        for family in ("sd", "ldm"):
            c = PSLDConfig.preset(name, family)
            cols.append(f"{c.num_steps:>5} {c.omega:>6g} {c.gamma:>6g}")
        print(f"{name:<16} {cols[0]:<24} {cols[1]:<25} {task.description}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from psld.demo import run_demo

    quiet_libraries()
    result = run_demo(args.out, n=args.n, steps=args.steps, seed=args.seed, progress=not args.no_progress)
    print(f"PSNR (dB) / SSIM, mean of {args.n} held-out Fashion-MNIST test images, built-in model:\n")
    print(result.table())
    print(f"{result.seconds:.0f} s; wrote {args.out}/comparison.png and table.md")
    print("The theorem checks: psld verify --quick")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from psld.training.cli import run_train

    quiet_libraries()
    return run_train(args)


def _cmd_verify(args: argparse.Namespace) -> int:
    from verification.report import run_verify

    return int(
        run_verify(quick=args.quick, thorough=args.thorough, out=args.out, seed=args.seed, only=args.only)
        or 0
    )


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from psld.evaluation.cli import run_evaluate

    return run_evaluate(args)


def _comparison(panels: list, size: tuple[int, int]):
    """Panels side by side, each resized (nearest) to ``size = (W, H)``, with a white 4 px gap."""
    from PIL import Image

    gap = 4
    w, h = size
    canvas = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * gap, h), (255, 255, 255))
    for i, im in enumerate(panels):
        canvas.paste(im.convert("RGB").resize((w, h), Image.Resampling.NEAREST), (i * (w + gap), 0))
    return canvas


#: test hook: seconds to sleep after the outputs are written to temporary names, before the rename
_PAUSE_ENV = "_PSLD_TEST_PAUSE_BEFORE_RENAME"


def _save_all(images: list, paths: list[Path]) -> None:
    """Write the PNGs as a set (:func:`psld.files.write_atomically`): all of them, or none.

    An interruption (SIGINT, SIGTERM via :func:`_terminate`) or a full disk removes the temporary files;
    a write error becomes a one-line ``ValueError`` (exit 2). New files get the usual ``0o666 & ~umask``.
    """

    def pause() -> None:
        seconds = float(os.environ.get(_PAUSE_ENV, "0") or 0)
        if seconds > 0:
            time.sleep(seconds)

    def png(image):
        return lambda fh: image.save(fh, format="PNG")

    try:
        write_atomically([(p, png(im)) for im, p in zip(images, paths, strict=True)], before_rename=pause)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(f"could not write the outputs to {str(paths[0].parent)!r}: {reason}") from None


def _terminate(signum, frame):  # pragma: no cover - exercised in a subprocess
    raise SystemExit(128 + signum)


def _check_restore(args: argparse.Namespace):
    """Every check of ``psld restore`` that needs no model, in one place (nothing loaded or written).

    Returns ``(task, image, mask, kernel, out_path, cmp_path, device)``.
    """
    from psld.images import load_images, load_kernel, load_mask, require_observed
    from psld.models.loading import num_train_timesteps
    from psld.tasks import get_task

    task = get_task(args.task)
    if args.sigma_y is not None and not args.simulate:
        raise ValueError("--sigma-y applies only with --simulate (a real observation carries its own noise)")
    if args.steps is not None:
        trained = num_train_timesteps(args.model) or validation.MAX_STEPS
        validation.steps(args.steps, "--steps", maximum=trained)
    image = load_images(args.input, "input")
    size = (int(image.shape[-2]), int(image.shape[-1]))
    mask = require_observed(load_mask(args.mask, size)) if args.mask is not None else None
    if mask is not None and task.kind != "mask":
        raise ValueError(f"task {task.name!r} takes no --mask (only inpaint-random, inpaint-box, destripe)")
    kernel = load_kernel(args.kernel) if args.kernel is not None else None
    if kernel is not None and task.kind != "blur":
        raise ValueError(f"task {task.name!r} takes no --kernel (only deblur-gaussian, deblur-motion)")
    if kernel is not None:
        validation.kernel_fits(kernel.shape, size, "--kernel")
    if not args.simulate:
        if task.inpainting and task.name != "destripe" and mask is None:
            raise ValueError(f"task {task.name!r} needs --mask (white = observed pixel) unless --simulate")
        if task.name == "deblur-motion" and kernel is None:
            raise ValueError("task 'deblur-motion' needs --kernel (a .npy array) unless --simulate")
    out_dir = Path(args.out)
    check_writable_folder(out_dir)
    stem = f"{Path(args.input).stem}_{task.name}"
    out_path, cmp_path = out_dir / f"{stem}.png", out_dir / f"{stem}_compare.png"
    existing = [str(p) for p in (out_path, cmp_path) if p.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"output {existing[0]!r} exists; pass --overwrite to replace it")
    device = validation.device(args.device, "--device")
    return task, image, mask, kernel, out_path, cmp_path, device


def _cmd_restore(args: argparse.Namespace) -> int:
    from psld.images import to_pil

    task, image, mask, kernel, out_path, cmp_path, device = _check_restore(args)
    quiet_libraries()
    from psld.models.loading import load_model
    from psld.restore import solve

    model = load_model(args.model, device=device, dtype=args.dtype, low_memory=args.low_memory)
    if args.steps is not None:  # a hub model's timesteps are known only now
        validation.steps(args.steps, "--steps", maximum=model.num_train_timesteps)
    result = solve(
        image,
        task,
        model=model,
        mask=mask,
        kernel=kernel,
        kernel_correlate=args.kernel_correlate,
        simulate=args.simulate,
        prompt=args.prompt,
        num_inference_steps=args.steps,
        method=args.method,
        omega=args.omega,
        gamma=args.gamma,
        sigma_y=args.sigma_y,
        sr_mode=args.sr_mode,
        seed=args.seed,
        output_type="pil",
        paste=not args.no_paste,
        progress=not args.no_progress,
        allow_large=args.allow_large,
        on_estimate=_print_estimate,
    )
    restored = result.images[0]
    measurement = to_pil(result.measurement[:1].clamp(0, 1))[0]
    source = to_pil(image[:1])[0]

    comparison = _comparison([source, measurement, restored], restored.size)
    out_dir = out_path.parent
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        _save_all([restored, comparison], [out_path, cmp_path])
    except ValueError:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # nothing partial: not even the folder this run created
        raise
    print(out_path)
    print(cmp_path)
    return 0


def _print_estimate(estimate) -> None:
    """One line on stderr before a large run starts (``psld.budget.RunEstimate``)."""
    print(f"psld: {estimate.describe()}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``psld`` console script; returns the exit status."""
    from psld import __version__
    from psld.sampler import DivergenceError

    parser = build_parser()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        args = parser.parse_args(argv)
        if args.version:
            print(f"psld {__version__}")
            return 0
        if args.command is None:
            parser.print_help()
            return 2
        if args.command in ("restore", "evaluate") and not getattr(args, "low_memory", False):
            from psld.heap import keep_freed_memory  # kept blocks fragment under --low-memory (psld.heap)

            keep_freed_memory()  # reuse freed activations instead of re-faulting them
        if args.command == "restore" and previous is not None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, _terminate)  # unwind (temporary files removed), exit 143
        return _commands()[args.command][1](args)
    except (UsageError, ValueError, DivergenceError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"psld: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("psld: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None and signal.getsignal(signal.SIGTERM) is _terminate:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
