"""Output files: one writability check and one atomic-write helper for `psld restore` and `psld evaluate`."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

__all__ = ["check_writable_folder", "write_atomically"]


def check_writable_folder(out_dir: str | os.PathLike, what: str = "output folder") -> None:
    """``ValueError`` (one line, naming ``what``) unless ``out_dir`` is, or can be created as, a writable
    folder; writes nothing that stays.

    Writability is probed by creating and removing a temporary file in the nearest existing ancestor:
    ``os.access`` says yes to root even on read-only file systems such as ``/proc``.
    """
    path = Path(out_dir).absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(out_dir)!r} exists and is not a folder")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {str(out_dir)!r} cannot be created: {str(parent)!r} is a file")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".psld-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{what} {str(out_dir)!r} is not writable ({exc.strerror})") from None


def write_atomically(
    items: Sequence[tuple[str | os.PathLike, Callable[[BinaryIO], object]]],
    *,
    before_rename: Callable[[], object] | None = None,
) -> None:
    """Write each ``(path, writer)`` as a set: all files appear, or none changes.

    Each ``writer(fh)`` writes into a hidden temporary file beside its path (``.NAME.XXXXXXXX.partial``,
    created with mode ``0o666`` so the process umask applies, as for any new file); once every file is
    written and flushed to disk, each is renamed into place with ``os.replace``. Any exception (a full
    disk, an interruption) removes the temporary files and propagates; no target is touched before all
    are written. ``before_rename`` runs between the two phases (a test hook).
    """
    temps: list[str] = []
    try:
        for path, writer in items:
            path = Path(path)
            tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.partial")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
        if before_rename is not None:
            before_rename()
        for tmp, (path, _) in zip(list(temps), items, strict=True):
            os.replace(tmp, path)
            temps.remove(tmp)
    finally:
        for tmp in temps:
            try:
                os.unlink(tmp)
            except OSError:
                pass
