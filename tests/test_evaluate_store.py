"""The pieces of ``psld evaluate`` on their own: seeds and entries, the JSONL store (read, append,
truncated last lines, merge), and a run killed in the middle of writing a row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import psld
from psld.evaluation import store
from psld.evaluation.entries import entry_seed, key, pending, units
from psld.evaluation.store import Appender, all_rows, merge, read_rows


def _row(image: str, task: str = "sr4", method: str = "pinv", **extra) -> dict:
    return {"image": image, "task": task, "method": method, **extra}


# ---------------------------------------------------------------------------------------------- seeds
def test_entry_seed_is_pinned_to_sha256_literals():
    """SHA-256 of "seed\\0image\\0task\\0stream", first 8 bytes big-endian, >> 1 (values from hashlib)."""
    assert entry_seed(0, "astronaut", "sr4") == 7063890140118204412
    assert entry_seed(0, "astronaut", "sr4", "operator") == 4702487387798094259
    assert entry_seed(0, "astronaut", "inpaint-random") == 3852497254630817831
    assert entry_seed(0, "coffee", "sr4") == 6792276690769511359
    assert entry_seed(1, "astronaut", "sr4") == 251796445700589299


def test_entry_seed_differs_across_image_task_stream_and_seed_and_fits_63_bits():
    seeds = {
        entry_seed(s, i, t, k)
        for s in (0, 1)
        for i in ("a", "b", "ab")
        for t in ("sr4", "denoise")
        for k in ("measurement", "operator")
    }
    assert len(seeds) == 2 * 3 * 2 * 2 and all(0 <= s < 2**63 for s in seeds)
    # the separator matters: ("a", "b\0c") and ("a\0b", "c") must not collide by concatenation
    assert entry_seed(0, "ab", "c") != entry_seed(0, "a", "bc")


def test_entry_seed_is_the_same_in_another_process_with_another_hash_seed():
    code = "from psld.evaluation.entries import entry_seed; print(entry_seed(7, 'x', 'sr4', 'operator'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == entry_seed(7, "x", "sr4", "operator")


def test_units_split_every_unit_once_over_the_processes_and_pending_skips_done():
    names, tasks = ["a", "b", "c"], ["sr4", "denoise"]
    everything = units(names, tasks)
    assert everything == [
        ("a", "sr4"),
        ("a", "denoise"),
        ("b", "sr4"),
        ("b", "denoise"),
        ("c", "sr4"),
        ("c", "denoise"),
    ]
    for world in (2, 3, 4):
        shares = [units(names, tasks, r, world) for r in range(world)]
        assert sorted(u for s in shares for u in s) == sorted(everything)
        assert shares[1][0] == everything[1] and all(len(s) <= -(-6 // world) for s in shares)
    done = {("a", "sr4", "psld"), ("a", "sr4", "pinv"), ("b", "sr4", "psld")}
    assert pending(everything[:3], ["psld", "pinv"], done) == [
        ("a", "denoise", ["psld", "pinv"]),
        ("b", "sr4", ["pinv"]),
    ]


# ---------------------------------------------------------------------------------------------- store
def test_read_rows_ignores_an_unterminated_last_line_even_when_it_parses(tmp_path):
    path = tmp_path / "r.jsonl"
    assert read_rows(path) == []
    lines = [json.dumps(_row(n)) for n in "abc"]
    path.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:7])  # killed mid-write
    assert [r["image"] for r in read_rows(path)] == ["a", "b"]
    path.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2])  # killed just before the newline
    assert [r["image"] for r in read_rows(path)] == ["a", "b"]  # the appender cuts it: not a row
    path.write_text(lines[0] + "\n{broken\n" + lines[2] + "\n")  # damage in the middle is an error
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_rows(path)


def test_appender_cuts_a_truncated_last_line_then_appends_each_row_once(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = json.dumps(_row("a")) + "\n"
    path.write_text(whole + json.dumps(_row("b"))[:-3])
    app = Appender(path)
    assert path.read_text() == whole
    app.append(_row("b"))
    app.append(_row("c"))
    assert [r["image"] for r in read_rows(path)] == ["a", "b", "c"] and path.read_text().endswith("}\n")


def test_a_failed_append_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    app = Appender(path)
    app.append(_row("a"))
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full)
    with pytest.raises(OSError):
        app.append(_row("b"))
    assert path.read_bytes() == before


def test_all_rows_and_merge_keep_each_entry_once_in_the_run_order(tmp_path):
    (tmp_path / "results.jsonl").write_text(json.dumps(_row("b", seed=1)) + "\n")
    (tmp_path / "results.rank0.jsonl").write_text(
        json.dumps(_row("a")) + "\n" + json.dumps(_row("b", seed=2)) + "\n"
    )
    (tmp_path / "results.rank1.jsonl").write_text(json.dumps(_row("c")) + "\n" + json.dumps(_row("z")) + "\n")
    rows = all_rows(tmp_path)
    assert [(r["image"], r.get("seed")) for r in rows] == [("b", 1), ("a", None), ("c", None), ("z", None)]
    order = [("a", "sr4", "pinv"), ("b", "sr4", "pinv"), ("c", "sr4", "pinv")]
    merged = merge(tmp_path, order)
    assert [key(r) for r in merged] == [*order, ("z", "sr4", "pinv")]  # unknown entries last
    assert read_rows(tmp_path / "results.jsonl") == merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]


# ---------------------------------------------------------------------------------------------- resume
def test_a_run_killed_while_writing_a_row_resumes_with_each_row_exactly_once(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in "abc":
        Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    out = tmp_path / "out"
    args = dict(methods="pinv", out=str(out), size=16, progress=False)
    real = Appender.append
    written = []

    def killed_on_the_third(self, row):
        if len(written) == 2:  # half the line reaches the disk, then the process dies
            with open(self.path, "ab") as f:
                f.write(json.dumps(row).encode()[:20])
            raise KeyboardInterrupt
        written.append(key(row))
        real(self, row)

    monkeypatch.setattr(Appender, "append", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        psld.evaluate(str(folder), ["sr4", "denoise"], **args)
    monkeypatch.undo()
    assert len(read_rows(out / "results.jsonl")) == 2
    resumed = psld.evaluate(str(folder), ["sr4", "denoise"], **args)
    keys = [key(r) for r in read_rows(out / "results.jsonl")]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert set(resumed.computed) == set(keys) - set(written) and len(resumed.computed) == 4
    assert Path(out / "results.jsonl").read_text().count("\n") == 6
    for image, task, method in keys:  # every row's image exists under its final name
        Image.open(out / task / method / f"{image}.png").load()


def test_results_file_per_process(tmp_path):
    assert store.results_file(tmp_path, 0, 1) == tmp_path / "results.jsonl"
    assert store.results_file(tmp_path, 0, 2) == tmp_path / "results.rank0.jsonl"
    assert store.results_file(tmp_path, 3, 4) == tmp_path / "results.rank3.jsonl"
