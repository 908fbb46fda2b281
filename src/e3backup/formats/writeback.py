"""Early write-back of restored data (Linux ``sync_file_range``).

A restore writes gigabytes into the page cache and then fsyncs. With plenty of RAM the kernel
starts writing only when the dirty threshold is reached, so the whole image would go to disk
during the final fsync, after all the CPU work is done. Asking for write-back of each range as
soon as it is written overlaps the disk with decryption and decompression, keeps dirty memory
low on a busy server, and leaves the final fsync little to do. It is a hint: where the call is
missing or fails, nothing changes but the timing.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2  # start write-out of dirty pages in the range; do not wait


def libc_function(name: str, argtypes: list[type]) -> Callable[..., int] | None:
    """A Linux libc call returning ``int`` (``errno`` kept), or None elsewhere or where missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    typed: Callable[..., int] = fn
    return typed


_sync_file_range = libc_function("sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint])


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start (not wait for) writing ``[offset, offset+length)`` of ``fd`` to its device."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def writeback_supported() -> bool:
    return _sync_file_range is not None


__all__ = ["libc_function", "start_writeback", "writeback_supported"]
