"""``python -m figures [--out DIR] [--quick] [--only NAME ...]``: write the docs/theory.md §9 figures."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from figures import FIGURES, maker


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m figures", description=__doc__)
    p.add_argument(
        "--out", type=Path, default=Path("figures-out"), help="output folder (default figures-out/)"
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in seconds")
    p.add_argument(
        "--only",
        nargs="+",
        choices=list(FIGURES),
        metavar="NAME",
        help=f"draw only these figures (choose from: {', '.join(FIGURES)})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for bad arguments, as argparse reports them)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message to stderr
        return int(exc.code) if isinstance(exc.code, int) else 2
    import torch

    torch.set_num_threads(1)
    for name in args.only or list(FIGURES):
        t0 = time.perf_counter()
        for path in maker(name)(args.out, args.quick):
            print(path)
        print(f"# {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
