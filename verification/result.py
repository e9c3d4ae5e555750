"""The record every theorem check returns, and the registry the report runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

LEVELS = ("quick", "default", "thorough")


@dataclass(frozen=True)
class CheckResult:
    """One measured statement: what theory predicts, what the production sampler gave, and the verdict.

    ``predicted`` and ``measured`` are numbers (or short strings for qualitative statements);
    ``tolerance`` says how they are compared, in words (e.g. ``"rel 1e-10"``, ``"< 0.5 * predicted"``).
    """

    name: str
    statement: str
    predicted: float | str
    measured: float | str
    tolerance: str
    passed: bool
    details: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("predicted", "measured"):
            v = d[key]
            if isinstance(v, float) and not math.isfinite(v):
                d[key] = str(v)
        return d


@dataclass(frozen=True)
class Check:
    """A registered check: ``fn(level=..., seed=...) -> list[CheckResult]``."""

    name: str
    title: str
    fn: Callable[..., list[CheckResult]]


CHECKS: dict[str, Check] = {}


def register(name: str, title: str):
    """Decorator adding a check function to :data:`CHECKS` under ``name``."""

    def deco(fn):
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, title, fn)
        return fn

    return deco


def level_size(level: str, quick, default, thorough):
    """Pick a problem size by verification level."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return {"quick": quick, "default": default, "thorough": thorough}[level]


def fmt(v) -> str:
    """Short human formatting of a predicted/measured value."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == 0 or not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 else f"{v:.3e}"
    return str(v)
