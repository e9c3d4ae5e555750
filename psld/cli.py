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
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from psld.files import check_writable_folder

__all__ = ["main", "build_parser"]


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``psld: error: ...``) and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite non-negative number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="psld", description="Posterior sampling with latent diffusion (PSLD).")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("restore", help="restore an image with a latent diffusion prior")
    r.add_argument(
        "input", metavar="INPUT", help="image file (the degraded observation, or clean with --simulate)"
    )
    r.add_argument("-t", "--task", required=True, help="task name (see `psld tasks`)")
    r.add_argument("--model", required=True, help="diffusers model folder or hub id")
    r.add_argument("--mask", help="mask image for inpainting (white = observed pixel)")
    r.add_argument("--kernel", help="blur kernel as a .npy array (deblurring), applied as a true convolution")
    r.add_argument(
        "--kernel-correlate",
        action="store_true",
        help="apply --kernel as a correlation (conv2d, the official code's convention) instead",
    )
    r.add_argument("--simulate", action="store_true", help="INPUT is clean: simulate the measurement first")
    r.add_argument("-o", "--out", default="psld-out", help="output folder (default: psld-out/)")
    r.add_argument("--overwrite", action="store_true", help="replace existing output files")
    r.add_argument("--steps", type=_positive_int, help="number of DDIM steps (default: task preset)")
    r.add_argument(
        "--method",
        help="solver: psld (default), gml, ldps, resample, mpgd, stsl, daps or diffpir (docs/methods.md)",
    )
    r.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    r.add_argument("--omega", type=_non_negative_float, help="measurement weight (default: task preset)")
    r.add_argument("--gamma", type=_non_negative_float, help="gluing weight (default: task preset)")
    r.add_argument(
        "--sigma-y",
        type=_non_negative_float,
        default=0.025,
        help="noise std in [0, 1] units for --simulate (default 0.025)",
    )
    r.add_argument("--sr-mode", default="bicubic", help="super-resolution operator: bicubic or average")
    r.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    r.add_argument("--dtype", help="UNet dtype: fp32, fp16 or bf16 (default: fp16 on cuda, fp32 on cpu)")
    r.add_argument("--low-memory", action="store_true", help="checkpoint UNet/VAE blocks: less memory")
    r.add_argument("--prompt", default="", help="text prompt for Stable Diffusion models (default empty)")
    r.add_argument("--no-paste", action="store_true", help="do not paste the observed pixels (inpainting)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sub.add_parser("tasks", help="list the tasks and their default presets")

    d = sub.add_parser("demo", help="restore shipped Fashion-MNIST test images with the built-in model")
    d.add_argument("-o", "--out", default="psld-demo", help="output folder (default: psld-demo/)")
    d.add_argument("--n", type=_positive_int, default=4, help="number of test images (default 4, at most 32)")
    d.add_argument("--steps", type=_positive_int, help="DDIM steps (default: the model's tuned preset)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    v = sub.add_parser("verify", help="run the theory verification report")
    level = v.add_mutually_exclusive_group()
    level.add_argument("--quick", action="store_true", help="fast subset of the checks")
    level.add_argument("--thorough", action="store_true", help="more examples and sizes")
    v.add_argument("--out", help="folder for the report")
    v.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    v.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks")

    from psld.evaluation.cli import add_evaluate_parser

    add_evaluate_parser(sub)
    from psld.training.cli import add_train_parser

    add_train_parser(sub)
    return parser


# ---------------------------------------------------------------------------------------------- commands
def _cmd_tasks() -> int:
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

    _quiet_libraries()
    result = run_demo(args.out, n=args.n, steps=args.steps, seed=args.seed, progress=not args.no_progress)
    print(f"PSNR (dB) / SSIM, mean of {args.n} held-out Fashion-MNIST test images, built-in model:\n")
    print(result.table())
    print(f"{result.seconds:.0f} s; wrote {args.out}/comparison.png and table.md")
    print("The theorem checks: psld verify --quick")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from verification.report import run_verify

    return int(
        run_verify(quick=args.quick, thorough=args.thorough, out=args.out, seed=args.seed, only=args.only)
        or 0
    )


def _quiet_libraries() -> None:
    """Silence diffusers/transformers loading bars and warnings (the CLI prints its own errors)."""
    for name in ("diffusers", "transformers"):
        try:
            module = __import__(f"{name}.utils.logging", fromlist=["logging"])
            module.set_verbosity_error()
            module.disable_progress_bar()
        except Exception:  # pragma: no cover - library layout changed; noise only
            pass


def _comparison(panels: list, size: tuple[int, int]):
    """Panels side by side, each resized (nearest) to ``size = (W, H)``, with a white 4 px gap."""
    from PIL import Image

    gap = 4
    w, h = size
    canvas = Image.new("RGB", (len(panels) * w + (len(panels) - 1) * gap, h), (255, 255, 255))
    for i, im in enumerate(panels):
        canvas.paste(im.convert("RGB").resize((w, h), Image.NEAREST), (i * (w + gap), 0))
    return canvas


#: test hook: seconds to sleep after the outputs are written to temporary names, before the rename
_PAUSE_ENV = "_PSLD_TEST_PAUSE_BEFORE_RENAME"


def _save_all(images: list, paths: list[Path]) -> None:
    """Write each image to a temporary name beside its path, then ``os.replace`` it into place.

    An interruption (SIGINT, SIGTERM via :func:`_terminate`) removes the temporary files: no output
    is ever left half written.
    """
    temps: list[str] = []
    try:
        for image, path in zip(images, paths, strict=True):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
            temps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                image.save(fh, format="PNG")
        pause = float(os.environ.get(_PAUSE_ENV, "0") or 0)
        if pause > 0:
            time.sleep(pause)
        for tmp, path in zip(list(temps), paths, strict=True):
            os.replace(tmp, path)
            temps.remove(tmp)
    finally:
        for tmp in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _terminate(signum, frame):  # pragma: no cover - exercised in a subprocess
    raise SystemExit(128 + signum)


def _cmd_restore(args: argparse.Namespace) -> int:
    from psld.images import load_images, load_kernel, load_mask, require_observed, to_pil
    from psld.models.loading import check_device
    from psld.tasks import get_task

    task = get_task(args.task)
    if args.sr_mode not in ("bicubic", "average"):
        raise ValueError(f"--sr-mode must be 'bicubic' or 'average', got {args.sr_mode!r}")
    image = load_images(args.input, "input")
    size = tuple(image.shape[-2:])
    mask = require_observed(load_mask(args.mask, size)) if args.mask is not None else None
    if mask is not None and task.kind != "mask":
        raise ValueError(f"task {task.name!r} takes no --mask (only inpaint-random, inpaint-box, destripe)")
    kernel = load_kernel(args.kernel) if args.kernel is not None else None
    if kernel is not None and task.kind != "blur":
        raise ValueError(f"task {task.name!r} takes no --kernel (only deblur-gaussian, deblur-motion)")
    if not args.simulate:
        if task.inpainting and task.name != "destripe" and mask is None:
            raise ValueError(f"task {task.name!r} needs --mask (white = observed pixel) unless --simulate")
        if task.name == "deblur-motion" and kernel is None:
            raise ValueError("task 'deblur-motion' needs --kernel (a .npy array) unless --simulate")
    out_dir = Path(args.out)
    check_writable_folder(out_dir)
    stem = f"{Path(args.input).stem}_{task.name}"
    out_path = out_dir / f"{stem}.png"
    cmp_path = out_dir / f"{stem}_compare.png"
    existing = [str(p) for p in (out_path, cmp_path) if p.exists()]
    if existing and not args.overwrite:
        raise ValueError(f"output {existing[0]!r} exists; pass --overwrite to replace it")
    device = check_device(args.device)

    _quiet_libraries()
    from psld.models.loading import load_model
    from psld.restore import solve

    model = load_model(args.model, device=device, dtype=args.dtype, low_memory=args.low_memory)
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
    )
    restored = result.images[0]
    measurement = to_pil(result.measurement[:1].clamp(0, 1))[0]
    source = to_pil(image[:1])[0]

    out_dir.mkdir(parents=True, exist_ok=True)
    comparison = _comparison([source, measurement, restored], restored.size)
    _save_all([restored, comparison], [out_path, cmp_path])
    print(out_path)
    print(cmp_path)
    return 0


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
        if args.command == "tasks":
            return _cmd_tasks()
        if args.command == "verify":
            return _cmd_verify(args)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "train":
            from psld.training.cli import run_train

            return run_train(args)
        if not getattr(args, "low_memory", False):  # kept blocks fragment: a higher peak (psld.heap)
            from psld.heap import keep_freed_memory

            keep_freed_memory()  # restore and evaluate: reuse freed activations instead of re-faulting
        if args.command == "evaluate":
            from psld.evaluation.cli import run_evaluate

            return run_evaluate(args)
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)  # unwind (temporary files removed), exit 143
        return _cmd_restore(args)
    except (_UsageError, ValueError, DivergenceError) as exc:
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
