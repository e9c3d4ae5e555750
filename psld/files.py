"""Output folders and files: the writability check, all-or-nothing writes (one mechanism,
:func:`write_atomically`), stale temporaries and a folder lock, shared by ``psld restore``,
``psld evaluate`` and ``psld train``."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "FolderBusyError",
    "atomic_write",
    "atomic_write_text",
    "check_writable_folder",
    "lock_folder",
    "remove_stale_temporaries",
    "write_atomically",
]


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


def write_atomically(
    items: Sequence[tuple[str | os.PathLike, Callable[[BinaryIO], object]]],
    *,
    before_rename: Callable[[], object] | None = None,
) -> None:
    """Write each ``(path, writer)`` as a set: all files appear, or none changes.

    Each ``writer(fh)`` writes into a hidden temporary file beside its path (``.<stem>.<pid>.tmp<suffix>``,
    created with mode ``0o666`` so the process umask applies, as for any new file); once every file is
    written and flushed to disk, each is renamed into place with ``os.replace``. Any exception (a full
    disk, an interruption) removes the temporary files and propagates; no target is touched before all
    are written. ``before_rename`` runs between the two phases (a test hook).
    """
    temps: list[str] = []
    try:
        for path, writer in items:
            path = Path(path)
            tmp = str(path.with_name(f".{path.stem}.{os.getpid()}{TMP_MARK}{path.suffix}"))
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write one file all or nothing (:func:`write_atomically` of ``[(path, write)]``), creating its folder.

    On any error (a full disk: ``OSError`` ``ENOSPC``, an interruption) ``path`` keeps its old content
    and the temporary file is removed; :func:`remove_stale_temporaries` clears those a killed process
    left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically([(path, write)])
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
