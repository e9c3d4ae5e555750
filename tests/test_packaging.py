"""Packaging metadata builds without setuptools' licence deprecation warning (issue 17, noise)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_metadata_has_an_spdx_licence_and_no_deprecation_warning(tmp_path):
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "meta").mkdir()
    code = (
        "import warnings, setuptools.build_meta as b\n"
        "warnings.simplefilter('always')\n"
        "print(b.prepare_metadata_for_build_wheel('meta'))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "deprecated" not in proc.stderr.lower(), proc.stderr[-2000:]
    (meta,) = (tmp_path / "meta").glob("*.dist-info/METADATA")
    lines = meta.read_text().splitlines()
    assert "License-Expression: MIT" in lines and "License-File: LICENSE" in lines
