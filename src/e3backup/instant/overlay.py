"""The copy-on-write overlay: where writes to a served snapshot go (never the repository).

One file, sparse::

    0       header (4 KiB): magic "E3BOVL01", version u32, block size u32, disk size u64,
            snapshot ID (64 hex characters)
    4096    bitmap: one bit per block, set once the block lives in the overlay
    D       data: block n at D + n * block size (D = 4096 + the bitmap rounded up to 4 KiB)

A block's data is written before its bit, so a crash leaves at worst a block written but not
marked (the snapshot's bytes show through, as before that write). A partial write of a block
not yet in the overlay first copies the block's bytes from below (read-modify-write, under one
lock). The file names its snapshot and disk size: served with another snapshot, it is refused.
An overlay is reused across runs: the VM's changes survive a restart when the file is kept.
"""

from __future__ import annotations

import os
import struct
import threading

from ..errors import E3Error
from ..platform.compat import pread, pwrite
from .nbdserver import Disk, Piece

MAGIC = b"E3BOVL01"
VERSION = 1
HEADER = struct.Struct(">8sIIQ64s")
BLOCK_SIZE = 64 << 10


class OverlayError(E3Error):
    """The overlay file cannot be used with this snapshot."""


class OverlayDisk:
    """``base`` with the writes kept in the overlay file ``path`` (created if missing)."""

    writable = True

    def __init__(self, base: Disk, path: str, snapshot_id: str, block_size: int = BLOCK_SIZE) -> None:
        self.base = base
        self.size = base.size
        self.path = path
        self._mu = threading.Lock()
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if exists:
                header = pread(self._fd, HEADER.size, 0)
                if len(header) < HEADER.size:
                    raise OverlayError(f"overlay {path} is not an e3backup overlay (too short)")
                magic, version, block_size, size, snap = HEADER.unpack(header)
                if magic != MAGIC or version != VERSION:
                    raise OverlayError(f"overlay {path} is not an e3backup overlay file")
                if snap.decode(errors="replace") != snapshot_id or size != self.size:
                    raise OverlayError(
                        f"overlay {path} belongs to snapshot {snap.decode(errors='replace')[:8]} "
                        f"({size} bytes), not to {snapshot_id[:8]} ({self.size} bytes)"
                    )
            else:
                pwrite(self._fd, HEADER.pack(MAGIC, VERSION, block_size, self.size, snapshot_id.encode()), 0)
            self.block_size = block_size
            self._blocks = -(-self.size // block_size)
            nbytes = -(-self._blocks // 8)
            self._data_at = 4096 + -(-nbytes // 4096) * 4096
            self._bitmap = bytearray(pread(self._fd, nbytes, 4096).ljust(nbytes, b"\0"))
            if not exists:
                os.ftruncate(self._fd, self._data_at + self.size)
        except BaseException:
            os.close(self._fd)
            raise

    # -- bitmap ------------------------------------------------------------------------------

    def _has(self, block: int) -> bool:
        return bool(self._bitmap[block >> 3] & (1 << (block & 7)))

    def _mark(self, first: int, last: int) -> None:
        for b in range(first, last + 1):
            self._bitmap[b >> 3] |= 1 << (b & 7)
        lo, hi = first >> 3, (last >> 3) + 1
        pwrite(self._fd, bytes(self._bitmap[lo:hi]), 4096 + lo)

    @property
    def blocks_written(self) -> int:
        return sum(bin(b).count("1") for b in self._bitmap)

    def _runs(self, offset: int, length: int) -> list[tuple[int, int, bool]]:
        """(offset, length, in overlay) runs of [offset, offset + length)."""
        end = offset + length
        runs: list[tuple[int, int, bool]] = []
        while offset < end:
            b = offset // self.block_size
            n = min((b + 1) * self.block_size, end) - offset
            mine = self._has(b)
            if runs and runs[-1][2] == mine:
                runs[-1] = (runs[-1][0], runs[-1][1] + n, mine)
            else:
                runs.append((offset, n, mine))
            offset += n
        return runs

    # -- Disk --------------------------------------------------------------------------------

    def read(self, offset: int, length: int) -> list[Piece]:
        out: list[Piece] = []
        for at, n, mine in self._runs(offset, length):
            if mine:
                out.append((at, pread(self._fd, n, self._data_at + at), n))
            else:
                out.extend(self.base.read(at, n))
        return out

    def extents(self, offset: int, length: int) -> list[tuple[int, int]]:
        runs: list[tuple[int, int]] = []
        for at, n, mine in self._runs(offset, length):
            for k, state in [(n, 0)] if mine else self.base.extents(at, n):
                if runs and runs[-1][1] == state:
                    runs[-1] = (runs[-1][0] + k, state)
                else:
                    runs.append((k, state))
        return runs

    def write(self, offset: int, data: bytes) -> None:
        with self._mu:
            end = offset + len(data)
            first, last = offset // self.block_size, (end - 1) // self.block_size
            for b in {first, last}:  # a partly written block takes the bytes below it first
                start = b * self.block_size
                stop = min(start + self.block_size, self.size)
                if not self._has(b) and (offset > start or end < stop):
                    pieces = self.base.read(start, stop - start)
                    below = b"".join(bytes(n) if d is None else bytes(d) for _, d, n in pieces)
                    pwrite(self._fd, below, self._data_at + start)
            pwrite(self._fd, data, self._data_at + offset)
            self._mark(first, last)

    def write_zeroes(self, offset: int, length: int) -> None:
        step = 4 << 20
        for at in range(offset, offset + length, step):
            self.write(at, bytes(min(step, offset + length - at)))

    def flush(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


__all__ = ["BLOCK_SIZE", "OverlayDisk", "OverlayError"]
