"""Keep freed CPU memory in the process for reuse: fewer page faults per guided step (glibc, Linux).

A guided step allocates and frees gigabytes of activations (SD-1.5 at 256², fp32: the decoder's
``[1, 128, 256, 256]`` maps are 32 MiB each). glibc serves a block above its mmap threshold (at
most 32 MiB with its dynamic rule) with a fresh ``mmap`` and unmaps it on ``free``, and it trims the
top of the heap once more than the trim threshold is free. Either way the next step touches fresh
pages, which the kernel faults in and zeroes one 4 KiB page at a time: about a million minor faults
per SD-1.5 step at 256², measured as 15-20% of the step's CPU time on the 2-core CPU.

:func:`keep_freed_memory` raises both thresholds (``mallopt``) so that freed blocks stay in the heap
and the next step reuses them. No arithmetic changes, so results are bit-identical; the price is that
the process keeps its high-water mark of memory until it exits. In the default mode the peak is
unchanged (measured 6949 against 6910 MiB at 256²); with ``low_memory`` (checkpointed blocks, many
blocks of many sizes) the kept blocks fragment the heap and the step's peak grows (measured at 512²:
6917 against 4387 MiB, for 1.31x less time), so the ``psld`` command calls it for ``restore`` and
``evaluate`` except with ``--low-memory``. Library users call it once themselves. Elsewhere (macOS,
musl, Windows) it does nothing and returns ``False``.

Measured by ``benchmarks/step.py --allocator`` (see the README).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory", "KEEP_MMAP_THRESHOLD", "KEEP_TRIM_THRESHOLD"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)
#: blocks below 1 GiB come from the heap (and return to it on free)
KEEP_MMAP_THRESHOLD = 1 << 30
#: the heap's free top is never trimmed below 2 GiB - 1 (the largest value mallopt takes)
KEEP_TRIM_THRESHOLD = (1 << 31) - 1
_GLIBC_DEFAULT = 128 * 1024  # glibc's initial mmap and trim thresholds


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (not musl)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory(enable: bool = True) -> bool:
    """Keep freed memory in the heap (``enable=True``) or give it back early (glibc's initial values).

    Returns ``True`` when glibc accepted the setting, ``False`` on other C libraries (nothing changed).
    ``enable=False`` sets glibc's initial thresholds (128 KiB) as fixed values; glibc's dynamic
    threshold rule stays off for the rest of the process.
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap_t, trim_t = (KEEP_MMAP_THRESHOLD, KEEP_TRIM_THRESHOLD) if enable else (_GLIBC_DEFAULT,) * 2
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_t)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_t))
