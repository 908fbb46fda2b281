"""The in-memory index of every blob in the repository, built for millions of blobs.

One ``BlobTable`` per blob type maps a blob ID to (pack number, offset, length, uncompressed
length) in 48 bytes per blob with no Python object per blob; a third maps pack IDs to pack
numbers, and pack number ``n`` is bytes ``32n..32n+32`` of one ``bytearray``. That is about
53 bytes per blob at 16 blobs per pack; docs/index-memory.md has the layout and measurements.

Blobs reach the index two ways. ``add_pack`` (the writer, one pack at a time) makes them visible
at once and merges them in bulk (see ``_maybe_compact``). ``add_index_columns`` /
``add_index_json`` (loading index files) only stage columns; they are sorted and merged in one
go by ``compact`` or by the next lookup. Duplicate entries are kept (restic allows them); a
lookup returns one of them. Every method takes one lock, so the index is thread-safe.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .blob import BlobType
from .blob_table import BlobTable, iter_records, join_ids
from .index import IndexColumns
from .pack import PackedBlob

# Pending entries cost ~300 bytes each (dict entry and tuple) until merged, and a merge rewrites
# the whole table (0.44 s for 1M entries on a busy 2-core machine). Merging when an eighth of the
# table is pending (at least 4 Ki, at most 64 Ki entries) keeps both small; short-lived pending
# objects also leave fewer holes in the heap while index files are decoded.
_COMPACT_AT = 65_536
_COMPACT_MIN = 4_096
_TRIM_AFTER = 100_000


def _maybe_compact(t: BlobTable) -> None:
    if t.unsorted >= min(_COMPACT_AT, max(_COMPACT_MIN, len(t) >> 3)):
        t.compact()


def _release_free_heap() -> None:
    """Return freed heap pages to the OS (glibc's ``malloc_trim``; nothing elsewhere).

    Decoding index files leaves ~500 bytes of dead JSON objects per blob spread over the heap;
    glibc keeps most of those pages resident (they cost ~45 bytes per blob at 1M blobs, more
    than the index itself), so after a bulk load they are handed back.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack_id: str
    blob: PackedBlob


class MasterIndex:
    """Lookup of (type, id) to pack and position; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pack_ids = bytearray()  # 32 bytes per pack number
        self._pack_num = BlobTable()  # pack ID -> (number, 0, 0, 0)
        self._tables = {BlobType.DATA: BlobTable(), BlobType.TREE: BlobTable()}
        self._by_type = (self._tables[BlobType.DATA], self._tables[BlobType.TREE])  # index by int: fast

    # -- adding -------------------------------------------------------------------------------

    def _pack_number(self, pack_id: bytes) -> int:
        v = self._pack_num.get(pack_id)
        if v is not None:
            return v[0]
        n = len(self._pack_ids) // 32
        self._pack_ids += pack_id
        self._pack_num.add(pack_id, (n, 0, 0, 0))
        _maybe_compact(self._pack_num)
        return n

    def add_pack(self, pack_id: str, blobs: list[PackedBlob]) -> None:
        with self._lock:
            n = self._pack_number(bytes.fromhex(pack_id))
            for b in blobs:
                t = self._tables[b.type]
                t.add(b.id, (n, b.offset, b.length, b.uncompressed_length))
                _maybe_compact(t)

    def add_index_columns(self, cols: IndexColumns) -> None:
        """Add every pack of a parsed index file; the blobs are merged by the next lookup or ``compact``."""
        pids = cols.pack_ids
        with self._lock:
            nums = np.array([self._pack_number(pids[i : i + 32]) for i in range(0, len(pids), 32)], dtype=np.uint32)
            pack = np.repeat(nums, np.frombuffer(cols.blob_counts, dtype=np.uint32))
            tree = np.frombuffer(cols.is_tree, dtype=np.bool_)
            ids = np.frombuffer(cols.ids, dtype=np.uint8).reshape(-1, 32)
            columns = [pack, *(np.frombuffer(c, dtype=np.uint32) for c in
                               (cols.offsets, cols.lengths, cols.uncompressed_lengths))]
            for bt, sel in ((BlobType.DATA, ~tree), (BlobType.TREE, tree)):
                if sel.all():
                    self._tables[bt].stage(cols.ids, *columns)
                elif sel.any():
                    self._tables[bt].stage(ids[sel].tobytes(), *(c[sel] for c in columns))

    def add_index_json(self, doc: Any, name: str = "") -> None:
        """``add_index_columns`` for a decoded index file; raises ``IntegrityError`` if malformed."""
        self.add_index_columns(IndexColumns.from_json(doc, name))

    def compact(self) -> None:
        with self._lock:
            staged = sum(t.staged for t in self._tables.values())
            for t in (*self._tables.values(), self._pack_num):
                t.compact()
        if staged >= _TRIM_AFTER:
            _release_free_heap()

    # -- looking up ---------------------------------------------------------------------------

    def _table(self, blob_type: BlobType) -> BlobTable:
        """The table, with staged entries merged; call with the lock held."""
        t = self._by_type[blob_type]
        if t.staged:
            t.compact()
        return t

    def _pack_hex(self, n: int) -> str:
        return self._pack_ids[32 * n : 32 * n + 32].hex()

    def lookup(self, blob_type: BlobType, blob_id: bytes) -> BlobLocation | None:
        with self._lock:
            rec = self._table(blob_type).get(blob_id)
        if rec is None:
            return None
        pack, off, length, ulen = rec
        return BlobLocation(self._pack_hex(pack), PackedBlob(blob_type, blob_id, off, length, ulen))

    def has(self, blob_type: BlobType, blob_id: bytes) -> bool:
        t = self._by_type[blob_type]  # the hot path of dedup: _table() inlined
        with self._lock:
            if t.staged:
                t.compact()
            return blob_id in t

    def __len__(self) -> int:
        with self._lock:
            return sum(len(t) for t in self._tables.values())

    def pack_ids(self) -> list[str]:
        with self._lock:
            raw = bytes(self._pack_ids)
        return [raw[i : i + 32].hex() for i in range(0, len(raw), 32)]

    def has_pack(self, pack_id: str) -> bool:
        try:
            raw = bytes.fromhex(pack_id)
        except ValueError:
            return False
        with self._lock:
            return self._pack_num.get(raw) is not None

    def nbytes(self) -> int:
        """Bytes held by the tables (excluding blobs not merged yet)."""
        with self._lock:
            return len(self._pack_ids) + sum(t.nbytes() for t in (*self._tables.values(), self._pack_num))

    # -- listing ------------------------------------------------------------------------------

    def _snapshot(self) -> tuple[bytes, list[tuple[BlobType, list[np.ndarray[Any, Any]]]]]:
        with self._lock:
            for t in self._tables.values():
                t.compact()
            return bytes(self._pack_ids), [(bt, t.columns()) for bt, t in self._tables.items()]

    def entries(self) -> Iterator[BlobLocation]:
        """Every indexed blob (duplicates included), in no particular order."""
        raw, tables = self._snapshot()
        names: dict[int, str] = {}
        for bt, cols in tables:
            for bid, pack, off, length, ulen in iter_records(cols):
                pid = names.get(pack)
                if pid is None:
                    pid = names[pack] = raw[32 * pack : 32 * pack + 32].hex()
                yield BlobLocation(pid, PackedBlob(bt, bid, off, length, ulen))

    def packs(self) -> dict[str, list[PackedBlob]]:
        """Blobs grouped by pack, each list sorted by offset (duplicates removed)."""
        raw, tables = self._snapshot()
        cols = [np.concatenate([c[i] for _, c in tables]) for i in range(8)]
        btype = np.concatenate([np.full(len(c[0]), int(bt), dtype=np.uint8) for bt, c in tables])
        key, w1, w2, w3, pack, off, length, ulen = cols
        # Sort by pack, then offset, then everything else, so identical entries are neighbours.
        order = np.lexsort((ulen, length, btype, w3, w2, w1, key, off, pack))
        rows = [key, w1, w2, w3, pack, off, length, ulen, btype]
        rows = [c[order] for c in rows]
        keep = np.ones(len(order), dtype=bool)
        if len(order) > 1:
            same = np.ones(len(order) - 1, dtype=bool)
            for c in rows:
                same &= c[1:] == c[:-1]
            keep[1:] = ~same
        rows = [c[keep] for c in rows]
        ids = join_ids(rows[:4])
        out: dict[str, list[PackedBlob]] = {}
        cur_pack, cur = -1, []
        types = (BlobType.DATA, BlobType.TREE)
        for j, (pk, o, ln, ul, t) in enumerate(zip(*(c.tolist() for c in rows[4:]), strict=True)):
            if pk != cur_pack:
                cur_pack, cur = pk, out.setdefault(raw[32 * pk : 32 * pk + 32].hex(), [])
            cur.append(PackedBlob(types[t], ids[32 * j : 32 * j + 32], o, ln, ul))
        return out


__all__ = ["BlobLocation", "MasterIndex"]
