"""One validation layer for the entry points (``psld.solve``, ``psld restore``, ``psld evaluate``).

Each check returns the cleaned value or raises :class:`InputError`, a ``ValueError`` whose one-line
message names the argument as the caller spells it (``--omega`` on the command line, ``omega`` in the
API) and says what was expected and what was got. The command line uses the same checks as argparse
types through :func:`argtype`, so a bad number gets the same message from ``psld restore`` and from
``psld.solve``. Every check here is cheap and runs before any model is loaded or any file is written.

This module imports only the standard library and torch (:func:`device`); it is a leaf of the package's
import graph, so any entry point may use it.
"""

from __future__ import annotations

import argparse
import math
import numbers
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "InputError",
    "argtype",
    "finite_number",
    "positive_int",
    "steps",
    "choice",
    "sr_mode",
    "existing_file",
    "device",
    "kernel_fits",
    "SR_MODES",
    "MAX_STEPS",
]

T = TypeVar("T")

#: super-resolution operators (``psld.operators.SuperResolution`` modes)
SR_MODES = ("bicubic", "average")
#: the documented maximum step count: the training timesteps of SD and the LDMs
MAX_STEPS = 1000


class InputError(ValueError):
    """Bad input: ``f"{name} must be {expected}, got {got!r}"`` (one line)."""

    def __init__(self, name: str, expected: str, got: Any, note: str = "") -> None:
        self.name, self.expected, self.got, self.note = name, expected, got, note
        super().__init__(f"{name} {self.bare}")

    @property
    def bare(self) -> str:
        """The message without the argument's name (argparse adds its own)."""
        got = self.got if isinstance(self.got, str) and self.got.startswith("<") else repr(self.got)
        return f"must be {self.expected}, got {got}" + (f" ({self.note})" if self.note else "")


def argtype(check: Callable[..., T], **options: Any) -> Callable[[str], T]:
    """``check`` as an argparse ``type=``: the same test and message (argparse prefixes the option)."""

    def parse(text: str) -> T:
        try:
            return check(text, "value", **options)
        except InputError as exc:
            raise argparse.ArgumentTypeError(exc.bare) from None

    parse.__name__ = getattr(check, "__name__", "value")  # argparse names the type in some messages
    return parse


# ---------------------------------------------------------------------------------------------- numbers
def finite_number(
    value: Any, name: str, *, minimum: float | None = 0.0, maximum: float | None = None
) -> float:
    """A finite float in ``[minimum, maximum]`` (either bound may be ``None``); text is parsed."""
    lo = "" if minimum is None else f" >= {minimum:g}"
    hi = "" if maximum is None else f" <= {maximum:g}"
    expected = "a finite number" + (f"{lo} and{hi}" if lo and hi else lo or hi)
    if isinstance(value, bool):
        raise InputError(name, expected, value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(name, expected, value) from None
    if not math.isfinite(x) or (minimum is not None and x < minimum) or (maximum is not None and x > maximum):
        raise InputError(name, expected, value)
    return x


def positive_int(value: Any, name: str, *, maximum: int | None = None) -> int:
    """An int in ``[1, maximum]``; text is parsed (``"3"``, not ``"3.0"``)."""
    expected = "a positive integer" if maximum is None else f"an integer from 1 to {maximum}"
    if isinstance(value, bool) or isinstance(value, float):
        raise InputError(name, expected, value)
    try:
        n = int(value) if isinstance(value, (str, numbers.Integral)) else None
    except ValueError:
        n = None
    if n is None or n < 1 or (maximum is not None and n > maximum):
        raise InputError(name, expected, value)
    return n


def steps(value: Any, name: str, *, maximum: int = MAX_STEPS) -> int:
    """A DDIM step count in ``[1, maximum]`` (``maximum``: the model's training timesteps)."""
    try:
        return positive_int(value, name, maximum=maximum)
    except InputError as exc:
        note = f"the model has {maximum} training timesteps"
        raise InputError(name, exc.expected, value, note=note) from None


def choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise InputError(name, "one of " + ", ".join(map(repr, allowed)), value)
    return str(value)


def sr_mode(value: Any, name: str = "sr_mode") -> str:
    """A super-resolution mode: ``"bicubic"`` (official) or ``"average"`` (average pooling)."""
    return choice(value, name, SR_MODES)


# ---------------------------------------------------------------------------------------------- files
def existing_file(value: Any, name: str) -> Path:
    """A path to an existing regular file."""
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(name, "a file path", f"<{type(value).__name__}>")
    path = Path(value)
    if not path.exists():
        raise InputError(name, "an existing file", str(path), note="no such file")
    if not path.is_file():
        raise InputError(name, "a file", str(path), note="it is a folder or a special file")
    return path


# ---------------------------------------------------------------------------------------------- devices
def device(value: Any, name: str = "device") -> Any:
    """``value`` as a ``torch.device`` (``None`` stays ``None``) that this machine has."""
    import torch

    if value is None:
        return None
    expected = "a torch device such as 'cpu' or 'cuda'"
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(name, expected, value) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(name, "a device this machine has", str(value), note="CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise InputError(name, "a device this machine has", str(value), note=f"{count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(name, "a device this machine has", str(value), note="MPS is not available")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(name, "'cpu', 'cuda' or 'mps'", value)
    return dev


# ---------------------------------------------------------------------------------------------- arrays
def kernel_fits(kernel_shape: Sequence[int], image_size: Sequence[int], name: str = "kernel") -> None:
    """A blur kernel ``(kh, kw)`` no larger than the image ``(H, W)`` it blurs."""
    kh, kw = (int(s) for s in kernel_shape[-2:])
    h, w = (int(s) for s in image_size[-2:])
    if kh > h or kw > w:
        raise InputError(name, f"no larger than the image ({h}x{w})", f"<{kh}x{kw} kernel>")
