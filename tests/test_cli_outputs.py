"""``psld restore`` outputs: file modes follow the umask, and a full disk is one line with nothing left."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psld.cli import main
from psld.files import write_atomically

H, W = 16, 16


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli-output-inputs")
    Image.fromarray((np.random.default_rng(0).random((H, W, 3)) * 255).astype(np.uint8)).save(d / "img.png")
    return d / "img.png"


def _argv(image: Path, model, out: Path) -> list[str]:
    return ["restore", str(image), "-t", "sr2", "--model", str(model), "-o", str(out), "--steps", "2",
            "--no-progress"]  # fmt: skip


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_restore_outputs_honour_the_umask(image, tiny_sd_path, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert main(_argv(image, tiny_sd_path, tmp_path / "o")) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "o").iterdir()}
    assert modes == {"img_sr2.png": mode, "img_sr2_compare.png": mode}


def test_full_disk_is_one_line_exit_2_and_nothing_partial(image, tiny_sd_path, tmp_path, capsys, monkeypatch):
    real_save = Image.Image.save
    calls = []

    def save_until_full(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:  # the second output: some bytes reach the disk, then it is full
            fp.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_until_full)
    out = tmp_path / "o"
    assert main(_argv(image, tiny_sd_path, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("psld: error: ") and "No space left on device" in err[0], err
    assert len(calls) == 2
    assert not out.exists() or list(out.iterdir()) == []


def test_write_atomically_all_or_nothing(tmp_path):
    def boom(fh):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.raises(OSError):
        write_atomically([(tmp_path / "a.bin", lambda fh: fh.write(b"new")), (tmp_path / "b.bin", boom)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"old"  # not replaced: the set is written whole or not at all
    write_atomically([(tmp_path / "a.bin", lambda fh: fh.write(b"new"))])
    assert (tmp_path / "a.bin").read_bytes() == b"new"
