"""Warnings that point at the user's code and fire once per run.

:func:`warn_at_caller` attributes a warning to the first stack frame outside the ``psld`` package (the
line in the user's script or test that called into psld), whatever the depth of library calls in
between. :func:`once_per_run` marks a function (``psld.sample``) as a run: inside it, each warning
*category* raised through :func:`warn_at_caller` is shown once (the first occurrence), not once per step.
"""

from __future__ import annotations

import contextvars
import functools
import os
import sys
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

__all__ = ["warn_at_caller", "once_per_run"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: categories already shown in the current run, or None outside any run
_SHOWN: contextvars.ContextVar[set[type[Warning]] | None] = contextvars.ContextVar("psld_shown", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def _stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` made in :func:`warn_at_caller`: the first frame outside psld."""
    frame: FrameType | None = sys._getframe(2)  # the psld function that called warn_at_caller
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn(message, category)`` attributed to the user's line; once per run inside a run."""
    shown = _SHOWN.get()
    if shown is not None:
        if category in shown:
            return
        shown.add(category)
    warnings.warn(message, category, stacklevel=_stacklevel())


def once_per_run(fn: F) -> F:
    """Decorate ``fn`` so that each category of :func:`warn_at_caller` warning is shown once per call.

    Nested runs (a run calling another) share the outer run's record.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        if _SHOWN.get() is not None:
            return fn(*args, **kwargs)
        token = _SHOWN.set(set())
        try:
            return fn(*args, **kwargs)
        finally:
            _SHOWN.reset(token)

    return run  # type: ignore[return-value]
