"""Output folders and files: the writability check, all-or-nothing writes, stale temporaries and a
folder lock, shared by ``psld restore`` and ``psld evaluate``."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


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


#: temporary files of :func:`atomic_write` are named ``.<name>.<pid>.tmp<suffix>`` beside their target
TMP_MARK = ".tmp"
#: what :func:`remove_stale_temporaries` removes: ``.<name>[.<pid>].tmp[.<ext>]`` (older versions left
#: ``.<name>.tmp.<ext>``); a user's ``.notes.tmpl`` or ``.keep`` is left alone
_TMP_NAME = re.compile(r"\..+?(\.\d+)?\.tmp(\.[A-Za-z0-9]+)?")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, fsync: bool = True) -> Path:
    """Write ``path`` all or nothing: ``write(fh)`` fills a temporary file beside it, which is fsynced,
    given the usual ``0o666 & ~umask`` mode and renamed over ``path`` (``os.replace``, atomic on POSIX).

    On any error (a full disk: ``OSError`` ``ENOSPC``, an interruption) the temporary file is removed and
    the error re-raised, so ``path`` holds either its old content or the complete new one. Temporary
    names are ``.<name>.<pid>.tmp<suffix>``; :func:`remove_stale_temporaries` clears those a killed
    process left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{TMP_MARK}{path.suffix}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_write` anywhere under ``folder``.

    Call it only while no other process writes there (e.g. holding :func:`lock_folder`); returns the
    removed paths.
    """
    removed = []
    for p in sorted(Path(folder).rglob(f".*{TMP_MARK}*")):
        if _TMP_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink():
            p.unlink()
            removed.append(p)
    return removed


class FolderBusyError(ValueError):
    """Another process holds the folder's lock (:func:`lock_folder`)."""


@contextlib.contextmanager
def lock_folder(folder: str | os.PathLike, name: str = ".psld.lock", what: str = "out") -> Iterator[Path]:
    """Hold an exclusive ``fcntl.flock`` on ``folder/name`` (created if needed) for the ``with`` block.

    A second holder is refused at once with :class:`FolderBusyError` (one line, naming the pid that
    holds it); the lock is released when the block ends or the process dies (also by SIGKILL).
    """
    import fcntl

    lock = Path(folder) / name
    fh = open(lock, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise FolderBusyError(
                f"{what}: {str(folder)!r} is in use by another run (pid {holder}); wait for it to finish "
                "or use another output folder"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield lock
    finally:
        fh.close()
