"""glibc malloc tuning for the image pipeline (DESIGN: the allocation trap).

zstd and AES return fresh multi-MiB buffers for every chunk. glibc serves allocations above its
mmap threshold with a fresh ``mmap`` (page faults on every byte, ``munmap`` on free), and in
worker threads that makes the hot path 3-5x slower. Raising the mmap threshold (and the trim
threshold with it, so freed chunks stay for reuse) keeps those buffers in the arenas. Process-wide
and idempotent; a no-op where glibc's ``mallopt`` is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum for the dynamic threshold on 64-bit
TRIM_THRESHOLD = 128 << 20

_done = False


def tune_malloc() -> bool:
    """Apply the thresholds once; returns whether glibc accepted them."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _done = ok
    return ok


__all__ = ["tune_malloc"]
