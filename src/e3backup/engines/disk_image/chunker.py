"""The fixed chunk grid of an image: chunk ``i`` covers ``[i * size, min((i + 1) * size, device))``.

A fixed grid (Proxmox Backup Server's ``fixed_index``) lets an incremental take the parent's blob
ID for every chunk it does not read. Inside a chunk only the bytes of the read plan are read; the
rest is known zero and zero-filled, so free space (deleted data) never reaches the repository.
An all-zero chunk is never hashed, compressed or uploaded: it takes the ID of the one all-zero
blob of its length (``ZeroBlobs``), stored once per repository.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from ...sources.extents import ExtentList
from ...sources.stored_image import zero_blob_ids


@dataclass(frozen=True)
class ChunkGrid:
    device_size: int
    chunk_size: int

    @property
    def count(self) -> int:
        return -(-self.device_size // self.chunk_size)

    def span(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of chunk ``index``; the last one may be short."""
        offset = index * self.chunk_size
        return offset, min(self.chunk_size, self.device_size - offset)

    def bytes_of(self, first: int, end: int) -> int:
        """Bytes covered by chunks ``[first, end)``."""
        return min(end * self.chunk_size, self.device_size) - first * self.chunk_size

    @property
    def last_length(self) -> int:
        return self.span(self.count - 1)[1] if self.count else 0


class PlanCursor:
    """The planned byte ranges inside one chunk, found by bisection (no sweep of the whole plan)."""

    def __init__(self, plan: ExtentList) -> None:
        self._starts = [e.offset for e in plan]
        self._ends = [e.end for e in plan]

    def within(self, offset: int, length: int) -> Iterator[tuple[int, int]]:
        """Planned ``(offset, length)`` pieces of ``[offset, offset + length)``, in order."""
        end = offset + length
        i = bisect.bisect_right(self._ends, offset)
        while i < len(self._starts) and self._starts[i] < end:
            a, b = max(self._starts[i], offset), min(self._ends[i], end)
            if b > a:
                yield a, b - a
            i += 1


class ZeroBlobs:
    """IDs of the all-zero blobs of the grid's two lengths (full chunk, short last chunk)."""

    def __init__(self, grid: ChunkGrid) -> None:
        self.grid = grid
        self.zeros = bytes(grid.chunk_size)
        self.ids = zero_blob_ids(grid.device_size, grid.chunk_size)

    def id_for(self, length: int) -> bytes:
        return self.ids[length]

    def is_zero(self, view: memoryview | bytearray) -> bool:
        """Whether a chunk buffer holds only zeros (a memcmp against a zero buffer)."""
        n = len(view)
        if n == len(self.zeros):
            return view == self.zeros if isinstance(view, bytearray) else bytes(view) == self.zeros
        return bytes(view) == self.zeros[:n]


__all__ = ["ChunkGrid", "PlanCursor", "ZeroBlobs"]
