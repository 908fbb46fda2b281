"""Process-wide tuning for the hot paths: malloc thresholds, and fewer garbage collections.

glibc hands out multi-MiB buffers with mmap and gives them back on free, so a worker thread that
allocates a fresh 1-16 MiB buffer per blob pays page faults on every byte (DESIGN.md measured
3-5x slower). Raising the mmap and trim thresholds makes those buffers come from, and return to,
the heap. Threads share few arenas (``M_ARENA_MAX``). ``E3BACKUP_NO_MALLOC_TUNING=1`` turns all this
off (to measure the difference).
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
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
        # the process's own symbols include libc's; ctypes.util.find_library would import
        # subprocess and shutil (10 ms of every start) and may run ldconfig
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    if not os.environ.get("MALLOC_ARENA_MAX"):
        # glibc gives threads up to 8 arenas a core, each keeping its own high-water mark of
        # buffers: one arena per two cores measured 20-25 MiB less peak RSS on a files backup, at
        # the same CPU time (docs/memory.md); most allocations happen under the GIL anyway
        mallopt(_M_ARENA_MAX, max(1, (os.cpu_count() or 2) // 2))
    return _done


_GC_THRESHOLD = (20_000, 20, 20)
_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage rarely while a backup or an image restore runs; undone when the last
    concurrent user leaves.

    A backup allocates millions of short-lived objects and keeps few, and refcounting frees them:
    a young-generation collection every 700 allocations and full ones that rescan every imported
    module cost 0.14 s of a 6.6 s first backup of 40k files (0.02 s with this). The objects that
    exist at the start are frozen (not scanned) and the young generation is collected every
    20,000 allocations.
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*_GC_THRESHOLD)
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


__all__ = ["fewer_collections", "tune_malloc"]
