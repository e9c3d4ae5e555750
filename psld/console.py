"""Console helpers shared by the ``psld`` subcommands (a leaf module: it imports nothing from psld).

:class:`Parser` turns argparse's usage errors into an exception that the entry point prints as one line
(``psld: error: ...``, exit status 2); :func:`quiet_libraries` silences the loading bars and warnings
of diffusers and transformers, whose messages a command replaces with its own.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["UsageError", "Parser", "quiet_libraries"]


class UsageError(Exception):
    """A bad command line (argparse's message, one line)."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def quiet_libraries() -> None:
    """Silence diffusers/transformers loading bars and warnings.

    Call it in a command before loading a model; the command prints its own errors. Library code does
    not call it (a user of ``psld.solve`` keeps the libraries' own settings).
    """
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in ("diffusers", "transformers"):
        try:
            module = __import__(f"{name}.utils.logging", fromlist=["logging"])
            module.set_verbosity_error()
            module.disable_progress_bar()
        except Exception:  # pragma: no cover - library layout changed; noise only
            pass
