"""The hypothesis profile chosen by tests/conftest.py: derandomized by default (``make test``, CI, plain
``pytest``), ``thorough`` on request; an unknown profile name is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PROBE = (
    "import conftest; from hypothesis import settings; s = settings.default; "
    "print(s.derandomize, s.max_examples)"
)


def _probe(profile: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PSLD_HYPOTHESIS_PROFILE")}
    if profile is not None:
        env["PSLD_HYPOTHESIS_PROFILE"] = profile
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=TESTS, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("profile,expected", [(None, "True 15"), ("", "True 15"), ("thorough", "False 300")])
def test_profile(profile, expected):
    out = _probe(profile)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == expected


def test_unknown_profile_is_refused():
    out = _probe("deep")
    assert out.returncode != 0 and "PSLD_HYPOTHESIS_PROFILE must be one of" in out.stderr
