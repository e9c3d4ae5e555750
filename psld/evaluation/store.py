"""The JSONL result store of :func:`psld.evaluate`: read, append, merge, and truncated last lines.

``results.jsonl`` holds one JSON object per entry and line. A process appends a row only after the
entry's PNG exists, writing the whole line in one ``write`` and fsyncing it; a process killed during
that write leaves an unterminated last line, which :func:`read_rows` ignores and :class:`Appender`
cuts before appending. Under a multi-process run process ``k`` appends to ``results.rank<k>.jsonl``;
:func:`merge` folds those into ``results.jsonl`` (each entry once, in the run's order) and removes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from psld.evaluation.entries import Key, key
from psld.files import atomic_write_text

__all__ = ["RESULTS", "read_rows", "Appender", "all_rows", "merge", "results_file"]

RESULTS = "results.jsonl"


def results_file(out: Path, rank: int, world: int) -> Path:
    """Where process ``rank`` appends: ``results.jsonl``, or ``results.rank<k>.jsonl`` if ``world > 1``."""
    return out / (RESULTS if world == 1 else f"results.rank{rank}.jsonl")


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSONL file; an unterminated last line (a killed write) is ignored.

    A malformed line anywhere else raises ``ValueError`` naming the file and line: that is damage,
    not an interrupted append.
    """
    if not path.is_file():
        return []
    data = path.read_bytes()
    complete = data.endswith(b"\n")
    lines = data.split(b"\n")
    if complete:
        lines.pop()
    rows = []
    for i, line in enumerate(lines):
        if i == len(lines) - 1 and not complete:
            break  # an interrupted append: never a row, even when it happens to parse
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise ValueError(f"{str(path)!r}: line {i + 1} is not valid JSON") from None
    return rows


class Appender:
    """Appends one JSON line per row and fsyncs it; cuts an unterminated last line when opened.

    A failed append (a full disk) is rolled back to the previous length, so the file never holds a
    partial line written by this process.
    """

    def __init__(self, path: Path):
        self.path = path
        if path.is_file():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def append(self, row: dict) -> None:
        line = (json.dumps(row) + "\n").encode()
        with open(self.path, "ab") as f:
            start = f.tell()
            try:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                f.truncate(start)
                raise


def all_rows(out: Path) -> list[dict]:
    """Rows of ``results.jsonl`` and of any ``results.rank*.jsonl``, each entry once (first seen wins)."""
    rows: list[dict] = []
    seen: set[Key] = set()
    for path in [out / RESULTS, *sorted(out.glob("results.rank*.jsonl"))]:
        for row in read_rows(path):
            if key(row) not in seen:
                seen.add(key(row))
                rows.append(row)
    return rows


def merge(out: Path, order: Sequence[Key]) -> list[dict]:
    """Write every row once into ``results.jsonl`` (atomic), ordered by ``order`` (others last, as
    found), remove the per-process files, and return the rows."""
    rows = all_rows(out)
    position = {k: i for i, k in enumerate(order)}
    rows.sort(key=lambda r: position.get(key(r), len(position)))
    atomic_write_text(out / RESULTS, "".join(json.dumps(r) + "\n" for r in rows))
    for p in out.glob("results.rank*.jsonl"):
        p.unlink()
    return rows
