"""Entries of :func:`psld.evaluate` and their seeds.

An *entry* is one ``(image, task, method)``; a *unit* is one ``(image, task)``, whose operator and
noisy measurement every method of that unit shares. Process ``rank`` of ``world`` takes the units
``rank, rank + world, ...`` of the image-major order. Seeds come from SHA-256 of
``"{seed}\\0{image}\\0{task}\\0{stream}"`` (first 8 bytes, big-endian, shifted right by one: 63 bits), so
they do not depend on the process, the run or Python's hash randomisation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = ["Key", "entry_seed", "key", "units", "pending"]

#: an entry's identity: (image name, task, method)
Key = tuple[str, str, str]


def entry_seed(seed: int, image: str, task: str, stream: str = "measurement") -> int:
    """A 63-bit seed for ``(seed, image, task, stream)`` (``stream``: ``"measurement"`` or ``"operator"``)."""
    digest = hashlib.sha256(f"{seed}\0{image}\0{task}\0{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def key(row: dict) -> Key:
    """The entry a result row belongs to."""
    return (row["image"], row["task"], row["method"])


def units(
    images: Sequence[str], tasks: Sequence[str], rank: int = 0, world: int = 1
) -> list[tuple[str, str]]:
    """The ``(image, task)`` units of process ``rank`` out of ``world`` (image-major order, strided)."""
    return [(i, t) for i in images for t in tasks][rank::world]


def pending(
    my_units: Iterable[tuple[str, str]], methods: Sequence[str], done: set[Key]
) -> list[tuple[str, str, list[str]]]:
    """``(image, task, methods not yet done)`` for each unit that still has work, in order."""
    todo = []
    for image, task in my_units:
        left = [m for m in methods if (image, task, m) not in done]
        if left:
            todo.append((image, task, left))
    return todo
