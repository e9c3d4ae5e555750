"""Output folders: one writability check for ``psld restore`` and ``psld evaluate``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
