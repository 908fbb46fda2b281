"""A sorted table of 32-byte IDs and four u32 values each, 48 bytes per entry (see docs/index-memory.md).

The table is eight numpy columns, not a list of records, so no Python object exists per entry:

    key, r1, r2, r3   u64  the ID as four big-endian 8-byte words (sorted by ``key``)
    pack, offset, length, uncompressed_length   u32

IDs are SHA-256 hashes, so ``key`` (the first 8 bytes) is almost always unique; a lookup bisects
``key`` and compares ``r1..r3`` over the (tiny) run of equal keys. Equal IDs may appear more than
once (duplicates are allowed) and sit next to each other.

New entries arrive two ways: ``add`` (one at a time, visible at once through a small dict) and
``stage`` (whole columns from an index file, visible after ``compact``). ``compact`` sorts the new
entries with one ``argsort`` and merges them into the table column by column, so its peak is the
table plus about 16 bytes per entry, never a second copy of the whole table. Column arrays are
replaced, never changed in place, so a caller holding old columns keeps a consistent view.

Not thread-safe: ``MasterIndex`` serialises access.
"""

from __future__ import annotations

import bisect
import mmap
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

ENTRY_SIZE = 48
_WORDS = struct.Struct(">4Q").unpack
_DTYPES = (np.uint64,) * 4 + (np.uint32,) * 4
_NCOLS = len(_DTYPES)

Value = tuple[int, int, int, int]
Columns = list[npt.NDArray[np.generic]]


def split_ids(ids: bytes) -> Columns:
    """Concatenated 32-byte IDs -> the four u64 key columns (native byte order, big-endian value)."""
    words = np.frombuffer(ids, dtype=">u8").reshape(-1, 4)
    cols = []
    for k in range(4):
        col = _alloc(len(words), np.uint64)
        col[:] = words[:, k]
        cols.append(col)
    return cols


def join_ids(key_cols: Columns) -> bytes:
    """The inverse of ``split_ids``: the four key columns -> concatenated 32-byte IDs."""
    return np.stack(key_cols, axis=1).astype(">u8").tobytes()


def _alloc(n: int, dtype: type[np.generic]) -> npt.NDArray[Any]:
    """An uninitialised column; large ones get their own anonymous mapping.

    Index files are decoded into ~500 bytes of short-lived JSON objects per blob. Were the
    long-lived columns allocated from the same malloc heap, they would pin its freed pages
    (fragmentation of ~50 bytes per blob, as much as the index itself); a mapping of their own
    goes back to the OS as a whole when the column is freed.
    """
    size = n * np.dtype(dtype).itemsize
    if size < _MMAP_MIN:
        return np.empty(n, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype)


_MMAP_MIN = 256 * 1024
_NONE = np.empty(0, dtype=np.uint8)  # stands for a column already freed


def _empty() -> Columns:
    return [np.empty(0, dtype=dt) for dt in _DTYPES]


class BlobTable:
    def __init__(self) -> None:
        self._cols: Columns = _empty()
        self._shift = 63
        self._views: list[memoryview] = []
        self._publish()
        self._pending: dict[bytes, Value] = {}
        self._extra: list[tuple[bytes, Value]] = []  # later duplicates of an ID already pending
        self._staged: list[Columns] = []
        self.staged = 0  # entries staged, not yet visible

    def __len__(self) -> int:
        return len(self._cols[0]) + len(self._pending) + len(self._extra) + self.staged

    @property
    def unsorted(self) -> int:
        """Entries not yet merged into the sorted columns."""
        return len(self._pending) + len(self._extra) + self.staged

    def add(self, entry_id: bytes, value: Value) -> None:
        if entry_id in self._pending:
            self._extra.append((entry_id, value))
        else:
            self._pending[entry_id] = value

    def stage(self, ids: bytes, pack: npt.ArrayLike, offset: npt.ArrayLike, length: npt.ArrayLike,
              uncompressed_length: npt.ArrayLike) -> None:
        """Queue whole columns (``ids`` = concatenated 32-byte IDs); invisible until ``compact``."""
        cols = split_ids(ids)
        n = len(cols[0])
        for dt, c in zip(_DTYPES[4:], (pack, offset, length, uncompressed_length), strict=True):
            a = np.asarray(c, dtype=dt)
            if a.shape != (n,):
                raise ValueError("stage: columns of different lengths")
            col = _alloc(n, dt)
            col[:] = a
            cols.append(col)
        if n:
            self._staged.append(cols)
            self.staged += n

    def get(self, entry_id: bytes) -> Value | None:
        """One entry for the ID among the sorted and pending ones (staged ones are not searched)."""
        v = self._pending.get(entry_id)
        if v is not None:
            return v
        i = self._find(entry_id)
        if i < 0:
            return None
        _, _, _, _, pack, offset, length, ulen, _ = self._views
        return pack[i], offset[i], length[i], ulen[i]

    def __contains__(self, entry_id: bytes) -> bool:
        return entry_id in self._pending or self._find(entry_id) >= 0

    def _find(self, entry_id: bytes) -> int:
        """The row of the ID in the sorted columns, or -1."""
        if len(entry_id) != 32:
            return -1
        k, w1, w2, w3 = _WORDS(entry_id)
        keys, v1, v2, v3 = self._views[:4]
        buckets = self._views[8]
        b = k >> self._shift
        hi = buckets[b + 1]
        i = bisect.bisect_left(keys, k, buckets[b], hi)
        while i < hi and keys[i] == k:
            if v1[i] == w1 and v2[i] == w2 and v3[i] == w3:
                return i
            i += 1
        return -1

    def compact(self) -> None:
        """Merge pending and staged entries into the sorted columns."""
        if self._pending or self._extra:
            items = list(self._pending.items()) + self._extra
            self._pending, self._extra = {}, []
            vals = np.array([v for _, v in items], dtype=np.uint32).reshape(-1, 4)
            self.stage(b"".join(k for k, _ in items), *vals.T)
            del items, vals
        if not self._staged:
            return
        run = self._take_staged()
        order = np.argsort(run[0])
        for c in range(_NCOLS):
            run[c] = np.take(run[c], order, out=_alloc(len(order), _DTYPES[c]))
        del order
        self._views = []  # release the buffers before replacing the columns
        if len(self._cols[0]):
            self._merge(run)
        else:
            self._cols = run
        self._publish()

    def _publish(self) -> None:
        """Make lookups see ``_cols``: memoryviews (fast item access) and the bucket directory.

        Bucket ``b`` holds the keys whose top bits are ``b``, rows ``buckets[b]:buckets[b+1]``;
        about 8 rows per bucket (under a byte per row), so a lookup bisects only a few rows.
        """
        keys = self._cols[0]
        bits = max(1, (len(keys) >> 3).bit_length())
        self._shift = 64 - bits
        starts = np.arange(1 << bits, dtype=np.uint64) << np.uint64(self._shift)
        buckets = np.append(np.searchsorted(keys, starts), len(keys)).astype(np.uint32)
        self._views = [c.data for c in (*self._cols, buckets)]

    def _take_staged(self) -> Columns:
        chunks, total = self._staged, self.staged
        self._staged, self.staged = [], 0
        run: Columns = []
        for c in range(_NCOLS):
            if len(chunks) == 1:
                run.append(chunks[0][c])
            else:
                run.append(np.concatenate([ch[c] for ch in chunks], out=_alloc(total, _DTYPES[c])))
            for ch in chunks:
                ch[c] = _NONE  # free each staged column once it is copied
        return run

    def _merge(self, run: Columns) -> None:
        old = self._cols
        n, m = len(old[0]), len(run[0])
        pos = np.searchsorted(old[0], run[0], side="right") + np.arange(m)
        from_old = np.ones(n + m, dtype=bool)
        from_old[pos] = False
        for c in range(_NCOLS):
            out = _alloc(n + m, _DTYPES[c])
            out[pos] = run[c]
            out[from_old] = old[c]
            run[c] = _NONE
            old[c] = out  # the old column is freed here unless a caller still holds it

    def columns(self) -> Columns:
        """The sorted columns (call ``compact`` first to include everything); never changed in place."""
        return list(self._cols)

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._cols) + self._views[-1].nbytes


def iter_records(cols: Columns, batch: int = 65_536) -> Iterator[tuple[bytes, int, int, int, int]]:
    """(id, pack, offset, length, uncompressed_length) for each row of ``cols``."""
    n = len(cols[0])
    for s in range(0, n, batch):
        part = [c[s : s + batch] for c in cols]
        ids = join_ids(part[:4])
        rows = zip(*(c.tolist() for c in part[4:]), strict=True)
        for j, (pack, off, length, ulen) in enumerate(rows):
            yield ids[j * 32 : j * 32 + 32], pack, off, length, ulen


__all__ = ["ENTRY_SIZE", "BlobTable", "iter_records", "join_ids", "split_ids"]
