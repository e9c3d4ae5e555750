"""psld.heap.keep_freed_memory: freed activations are reused instead of faulted in again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import psld
from psld.cli import main
from psld.heap import _glibc, keep_freed_memory

glibc_only = pytest.mark.skipif(_glibc() is None, reason="mallopt is glibc's")

# Page faults per 32 MiB tensor allocation, after two warm-up rounds, in a fresh interpreter.
_PROBE = """
import json, resource, sys, torch
from psld.heap import keep_freed_memory
torch.set_num_threads(1)
applied = [keep_freed_memory(flag == "on") for flag in sys.argv[1:]]
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(1, 128, 256, 256)  # 32 MiB
rounds = []
for _ in range(3):
    start = faults()
    for _ in range(10):
        a = x * 2
        b = a + 1
        del a, b
    rounds.append((faults() - start) / 20)
print(json.dumps({"applied": applied, "faults_per_alloc": rounds[-1]}))
"""


def _probe(*flags: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, *flags], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_blocks_are_reused_not_faulted_in_again():
    pages = 32 * 2**20 // 4096  # 8192 pages of 4 KiB per allocation
    default, kept = _probe(), _probe("on")
    assert kept["applied"] == [True]
    # glibc's default unmaps every 32 MiB block on free: each allocation faults all its pages in again
    assert default["faults_per_alloc"] > pages / 2
    assert kept["faults_per_alloc"] < pages / 100


@glibc_only
def test_enable_false_gives_memory_back_again():
    released = _probe("on", "off")
    assert released["applied"] == [True, True]
    assert released["faults_per_alloc"] > 32 * 2**20 // 4096 / 2


def test_returns_false_without_glibc(monkeypatch):
    monkeypatch.setattr("psld.heap._glibc", lambda: None)
    assert keep_freed_memory() is False
    assert psld.keep_freed_memory is keep_freed_memory


@pytest.mark.parametrize(
    "argv, called",
    [
        (["restore", "missing.png", "-t", "sr4", "--model", "m"], True),
        (["restore", "missing.png", "-t", "sr4", "--model", "m", "--low-memory"], False),
        (["evaluate", "--images", "missing-folder", "-t", "sr4", "--model", "m", "-o", "o"], True),
        (["tasks"], False),
        (["--version"], False),
    ],
)
def test_cli_keeps_freed_memory_for_restore_and_evaluate(monkeypatch, capsys, tmp_path, argv, called):
    calls = []
    monkeypatch.setattr("psld.heap.keep_freed_memory", lambda enable=True: calls.append(enable) or True)
    monkeypatch.chdir(tmp_path)
    main(argv)
    assert calls == ([True] if called else [])
