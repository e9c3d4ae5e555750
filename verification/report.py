"""``psld verify``: run the registered checks, print a table, write report.json and report.md."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from verification.result import CHECKS, CheckResult, fmt


def _load_checks() -> None:
    import verification.checks  # noqa: F401  (registers every check)


def _order(name: str) -> tuple[int, str]:
    head = name.split("-", 1)[0]
    return (int(head[1:]) if head[1:].isdigit() else 10**6, name)


def run_checks(level: str = "default", seed: int = 0, only=None, progress: bool = True) -> list[CheckResult]:
    """Run the selected checks and return their records (each timed)."""
    _load_checks()
    # report order t1..t11, whatever order the modules registered in (some import each other)
    ordered = sorted(CHECKS, key=_order)
    names = ordered if not only else list(only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(ordered)}")
    results: list[CheckResult] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny float64 problems: threading only adds contention
    it = names
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(names, desc="psld verify", unit="check", file=sys.stderr)
    try:
        for name in it:
            start = time.perf_counter()
            rows = CHECKS[name].fn(level=level, seed=seed)
            seconds = round(time.perf_counter() - start, 3)  # the whole check's time, on each of its rows
            results.extend(CheckResult(**{**r.to_dict(), "seconds": seconds}) for r in rows)
    finally:
        torch.set_num_threads(threads)
    return results


def table(results: list[CheckResult]) -> str:
    """A plain-text table: check, statement, predicted, measured, tolerance, verdict, seconds."""
    head = ("check", "statement", "predicted", "measured", "tolerance", "ok", "s")
    rows = [
        (
            r.name,
            r.statement,
            fmt(r.predicted),
            fmt(r.measured),
            r.tolerance,
            "PASS" if r.passed else "FAIL",
            f"{r.seconds:.2f}",
        )
        for r in results
    ]
    widths = [min(max(len(str(x)) for x in col), 70) for col in zip(head, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths, strict=True))
    return "\n".join([line(head), line("-" * w for w in widths), *map(line, rows)])


def markdown(results: list[CheckResult], meta: dict) -> str:
    out = [
        "# psld verify report",
        "",
        f"Level `{meta['level']}`, seed {meta['seed']}, {len({r.name for r in results})} checks, "
        f"{meta['passed']}/{meta['total']} rows passed, "
        f"{meta['seconds']:.1f} s on {meta['machine']}. Column `s`: seconds of the whole check "
        "(repeated on each of its rows).",
        "",
        "| check | statement | predicted | measured | tolerance | result | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [
            r.name,
            r.statement,
            fmt(r.predicted),
            fmt(r.measured),
            r.tolerance,
            "pass" if r.passed else "**FAIL**",
            f"{r.seconds:.2f}",
        ]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def run_verify(
    quick: bool = False,
    thorough: bool = False,
    out: str | Path | None = None,
    seed: int = 0,
    only=None,
    progress: bool = True,
) -> int:
    """Entry point of ``psld verify``; returns the exit status (0 iff every check passed).

    The report goes to ``out`` (default, also for ``None``: ``psld-verify/`` in the working folder).
    """
    if quick and thorough:
        raise ValueError("choose at most one of quick and thorough")
    level = "quick" if quick else "thorough" if thorough else "default"
    start = time.perf_counter()
    results = run_checks(level=level, seed=seed, only=only, progress=progress)
    seconds = time.perf_counter() - start
    passed = sum(r.passed for r in results)
    meta = dict(
        level=level,
        seed=seed,
        total=len(results),
        passed=passed,
        seconds=round(seconds, 2),
        machine=f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    )
    print(table(results))
    checks = len({r.name for r in results})  # the progress bar counts checks; each has several rows
    print(f"\n{checks} checks, {passed}/{len(results)} predicted-vs-measured rows passed in {seconds:.1f} s")
    out = Path("psld-verify" if out is None else out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(
        json.dumps({"meta": meta, "results": [r.to_dict() for r in results]}, indent=2, default=str)
    )
    (out / "report.md").write_text(markdown(results, meta))
    print(f"wrote {out / 'report.json'} and {out / 'report.md'}")
    return 0 if passed == len(results) else 1
