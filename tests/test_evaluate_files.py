"""``psld.files`` as evaluate uses it: all-or-nothing writes with the umask's mode, the folder lock,
and which stale temporaries are removed."""

from __future__ import annotations

import os
import stat

import pytest

from psld.files import FolderBusyError, atomic_write, atomic_write_text, lock_folder, remove_stale_temporaries


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_write_gives_the_mode_the_umask_allows(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    finally:
        os.umask(old)
    assert path.read_text() == "hello" and stat.S_IMODE(path.stat().st_mode) == mode


def test_atomic_write_keeps_the_old_content_and_no_temporary_on_error(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def fail(fh):
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_lock_folder_refuses_a_second_holder_naming_the_first_and_frees_on_exit(tmp_path):
    with lock_folder(tmp_path):
        with pytest.raises(FolderBusyError, match=rf"in use by another run \(pid {os.getpid()}\)"):
            with lock_folder(tmp_path):
                pass
        with lock_folder(tmp_path, ".other.lock"):  # another lock name is another lock
            pass
    with lock_folder(tmp_path):  # released
        pass


def test_remove_stale_temporaries_removes_only_temporary_names(tmp_path):
    (tmp_path / "d").mkdir()
    stale = [".a.123.tmp.png", ".run.9.tmp.json", "d/.b.tmp.pdf", "d/.c.77.tmp"]
    kept = [".keep", ".notes.tmpl", "a.tmp.png", "d/.psld.lock", "d/x.png"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in removed) == sorted(stale)
    assert all((tmp_path / name).exists() for name in kept)
