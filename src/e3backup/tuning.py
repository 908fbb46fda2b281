"""Process-wide tuning for the hot paths.

glibc hands out multi-MiB buffers with mmap and gives them back on free, so a worker thread that
allocates a fresh 1-16 MiB buffer per blob pays page faults on every byte (DESIGN.md measured
3-5x slower). Raising the mmap and trim thresholds makes those buffers come from, and return to,
the heap. ``E3BACKUP_NO_MALLOC_TUNING=1`` turns this off (to measure the difference).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
_TRIM_THRESHOLD = 256 * 1024 * 1024


_done = False


def tune_malloc() -> bool:
    """Apply the thresholds once when running on glibc; returns whether they are in force.

    Called by the CLI at start and by the engines (which the agent runs in-process)."""
    global _done
    if _done:
        return True
    if os.environ.get("E3BACKUP_NO_MALLOC_TUNING") or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _done


__all__ = ["tune_malloc"]
