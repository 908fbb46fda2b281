"""Reading one chunk of the grid into a pooled buffer: planned bytes read, the rest zero-filled.

Buffers are allocated once (``BufferPool``) and reused: a fresh multi-MiB buffer per chunk is
3-5x slower in worker threads (DESIGN: the allocation trap). The pool's size bounds the chunks in
flight, and so the memory, whatever the disk size. Read errors follow the ``DeviceReader``'s
policy (best effort: zero-filled and reported; strict: ``ReadError``).
"""

from __future__ import annotations

import queue
import threading

from ...errors import Cancelled
from ...sources.reader import DeviceReader
from .chunker import ChunkGrid, PlanCursor


class BufferPool:
    """At most ``count`` reusable bytearrays of ``size`` bytes, made when first needed (a tracked
    incremental that reads few chunks does not zero-fill them all)."""

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._left = count  # still to be made
        self._mu = threading.Lock()

    def get(self, stop: threading.Event) -> bytearray:
        while True:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                pass
            with self._mu:
                if self._left > 0:
                    self._left -= 1
                    return bytearray(self.size)
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set():
                    raise Cancelled() from None

    def put(self, buf: bytearray) -> None:
        self._free.put(buf)


class ChunkReader:
    """Fills a buffer with chunk ``index``: planned pieces from the device, zeros elsewhere."""

    def __init__(self, device: DeviceReader, grid: ChunkGrid, cursor: PlanCursor, zeros: bytes) -> None:
        self.device = device
        self.grid = grid
        self.cursor = cursor
        self.zeros = memoryview(zeros)

    def read(self, index: int, buf: bytearray) -> tuple[memoryview, int]:
        """``(view of the chunk's bytes, bytes read from the device)``."""
        offset, length = self.grid.span(index)
        view = memoryview(buf)[:length]
        pos = offset  # everything before ``pos`` in this chunk is filled
        nread = 0
        for off, n in self.cursor.within(offset, length):
            if off > pos:
                view[pos - offset : off - offset] = self.zeros[: off - pos]
            self.device.read_into(off, view[off - offset : off - offset + n])
            nread += n
            pos = off + n
        if pos < offset + length:
            view[pos - offset :] = self.zeros[: offset + length - pos]
        return view, nread


__all__ = ["BufferPool", "ChunkReader"]
