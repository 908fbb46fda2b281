"""The in-memory index of every blob in the repository, built for millions of blobs.

Python objects cost ~150 bytes per dict entry, so the bulk of the index is kept as one sorted
``bytes`` table of fixed 48-byte records per blob type:

    id(32) || pack number(u32) || offset(u32) || length(u32) || uncompressed_length(u32)

and looked up by binary search over the IDs (48 bytes per blob, plus 32 per pack). Blobs added
since the last compaction sit in a small dict and are merged in bulk. Duplicate entries are
kept (restic allows them); a lookup returns one of them.
"""

from __future__ import annotations

import bisect
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .blob import BlobType
from .pack import PackedBlob

RECORD = 48
_REC = struct.Struct("<32sIIII")
_COMPACT_AT = 200_000


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack_id: str
    blob: PackedBlob


class _IdView:
    """A sequence of the IDs in a record table, for ``bisect``."""

    __slots__ = ("_n", "_t")

    def __init__(self, table: bytes) -> None:
        self._t = table
        self._n = len(table) // RECORD

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> bytes:
        o = i * RECORD
        return self._t[o : o + 32]


class _Table:
    def __init__(self) -> None:
        self.sorted = b""
        self.view = _IdView(b"")
        self.pending: dict[bytes, tuple[int, int, int, int]] = {}
        self.extra: list[bytes] = []  # pending duplicates of an ID already pending

    def get(self, blob_id: bytes) -> tuple[int, int, int, int] | None:
        p = self.pending.get(blob_id)
        if p is not None:
            return p
        i = bisect.bisect_left(self.view, blob_id)
        if i < len(self.view) and self.view[i] == blob_id:
            _, pack, off, length, ulen = _REC.unpack_from(self.sorted, i * RECORD)
            return pack, off, length, ulen
        return None

    def add(self, blob_id: bytes, rec: tuple[int, int, int, int]) -> None:
        if blob_id in self.pending:
            self.extra.append(_REC.pack(blob_id, *rec))
        else:
            self.pending[blob_id] = rec

    def compact(self) -> None:
        if not self.pending and not self.extra:
            return
        t = self.sorted
        recs = [t[o : o + RECORD] for o in range(0, len(t), RECORD)]
        recs.extend(_REC.pack(k, *v) for k, v in self.pending.items())
        recs.extend(self.extra)
        recs.sort()
        self.sorted = b"".join(recs)
        self.view = _IdView(self.sorted)
        self.pending = {}
        self.extra = []

    def __len__(self) -> int:
        return len(self.view) + len(self.pending) + len(self.extra)

    def records(self) -> Iterator[tuple[bytes, int, int, int, int]]:
        yield from _REC.iter_unpack(self.sorted)
        for k, v in self.pending.items():
            yield (k, *v)
        for r in self.extra:
            yield _REC.unpack(r)


class MasterIndex:
    """Lookup of (type, id) to pack and position; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pack_ids: list[str] = []
        self._pack_num: dict[str, int] = {}
        self._tables = {BlobType.DATA: _Table(), BlobType.TREE: _Table()}

    def _pack_number(self, pack_id: str) -> int:
        n = self._pack_num.get(pack_id)
        if n is None:
            n = self._pack_num[pack_id] = len(self._pack_ids)
            self._pack_ids.append(pack_id)
        return n

    def add_pack(self, pack_id: str, blobs: list[PackedBlob]) -> None:
        with self._lock:
            n = self._pack_number(pack_id)
            for b in blobs:
                t = self._tables[b.type]
                t.add(b.id, (n, b.offset, b.length, b.uncompressed_length))
                if len(t.pending) >= _COMPACT_AT:
                    t.compact()

    def compact(self) -> None:
        with self._lock:
            for t in self._tables.values():
                t.compact()

    def lookup(self, blob_type: BlobType, blob_id: bytes) -> BlobLocation | None:
        t = self._tables[blob_type]
        rec = t.get(blob_id)
        if rec is None:
            return None
        pack, off, length, ulen = rec
        return BlobLocation(self._pack_ids[pack], PackedBlob(blob_type, blob_id, off, length, ulen))

    def has(self, blob_type: BlobType, blob_id: bytes) -> bool:
        return self._tables[blob_type].get(blob_id) is not None

    def __len__(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def pack_ids(self) -> list[str]:
        return list(self._pack_ids)

    def has_pack(self, pack_id: str) -> bool:
        return pack_id in self._pack_num

    def entries(self) -> Iterator[BlobLocation]:
        """Every indexed blob (duplicates included), in no particular order."""
        for bt, t in self._tables.items():
            for bid, pack, off, length, ulen in t.records():
                yield BlobLocation(self._pack_ids[pack], PackedBlob(bt, bid, off, length, ulen))

    def packs(self) -> dict[str, list[PackedBlob]]:
        """Blobs grouped by pack, each list sorted by offset (duplicates removed)."""
        out: dict[str, list[PackedBlob]] = {}
        for loc in self.entries():
            out.setdefault(loc.pack_id, []).append(loc.blob)
        for pid, blobs in out.items():
            uniq = sorted(set(blobs), key=lambda b: b.offset)
            out[pid] = uniq
        return out


__all__ = ["BlobLocation", "MasterIndex"]
