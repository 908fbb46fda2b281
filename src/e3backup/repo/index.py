"""Index files (``index/<id>``): which blobs each pack holds (spec section 6).

    {"supersedes": [...], "packs": [{"id": PACK, "blobs": [{"id","type","offset","length"
                                                           [,"uncompressed_length"]}]}]}

Readers accept the old format (a bare ``packs`` array). Writers list every blob of every pack
they name and start a new file after ``MAX_BLOBS_PER_FILE`` blobs.

``IndexFile`` holds one ``PackedBlob`` per blob; ``IndexColumns`` reads the same JSON into flat
columns with no object per blob, for loading the whole repository index.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter, methodcaller
from typing import Any

from ..errors import IntegrityError
from .blob import BlobType
from .pack import PackedBlob

MAX_BLOBS_PER_FILE = 150_000


@dataclass
class IndexPack:
    id: str
    blobs: list[PackedBlob]


@dataclass
class IndexFile:
    packs: list[IndexPack] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)

    @property
    def blob_count(self) -> int:
        return sum(len(p.blobs) for p in self.packs)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.supersedes:
            doc["supersedes"] = self.supersedes
        doc["packs"] = [{"id": p.id, "blobs": [_blob_json(b) for b in p.blobs]} for p in self.packs]
        return doc

    @classmethod
    def from_json(cls, doc: Any, name: str = "") -> IndexFile:
        try:
            if isinstance(doc, list):  # the old format: the packs array itself
                packs_json, supersedes = doc, []
            else:
                packs_json, supersedes = doc.get("packs") or [], list(doc.get("supersedes") or [])
            packs = []
            for p in packs_json:
                blobs = [
                    PackedBlob(
                        BlobType.from_json(b["type"]),
                        bytes.fromhex(b["id"]),
                        int(b["offset"]),
                        int(b["length"]),
                        int(b.get("uncompressed_length") or 0),
                    )
                    for b in p["blobs"] or []
                ]
                packs.append(IndexPack(str(p["id"]).lower(), blobs))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise IntegrityError(f"index {name}: invalid JSON structure: {e}") from e
        return cls(packs, supersedes)


@dataclass(frozen=True)
class IndexColumns:
    """An index file as columns: pack ``i`` holds the next ``blob_counts[i]`` blobs."""

    pack_ids: bytes  # 32 bytes per pack
    blob_counts: array[int]
    ids: bytes  # 32 bytes per blob
    is_tree: bytes  # 1 per tree blob, 0 per data blob
    offsets: array[int]  # u32 columns, one entry per blob
    lengths: array[int]
    uncompressed_lengths: array[int]

    @property
    def blob_count(self) -> int:
        return len(self.offsets)

    @classmethod
    def from_json(cls, doc: Any, name: str = "") -> IndexColumns:
        """Parse and check a decoded index file (same rules as ``IndexFile.from_json``)."""
        try:
            packs_json = doc if isinstance(doc, list) else doc.get("packs") or []
            pack_hex: list[str] = []
            counts = array("I")
            blobs: list[Any] = []
            for p in packs_json:
                pack_hex.append(p["id"])
                bl = p["blobs"] or []
                counts.append(len(bl))
                blobs.extend(bl)
            pack_ids = _hex_ids(pack_hex, "pack")
            ids = _hex_ids(list(map(itemgetter("id"), blobs)), "blob")
            types = list(map(itemgetter("type"), blobs))
            if types.count("data") + types.count("tree") != len(types):
                raise ValueError(f"invalid blob type in {sorted(set(map(str, types)) - {'data', 'tree'})!r}"[:200])
            is_tree = bytes(map("tree".__eq__, types))
            offsets = array("I", map(itemgetter("offset"), blobs))
            lengths = array("I", map(itemgetter("length"), blobs))
            ulen_list = list(map(methodcaller("get", "uncompressed_length", 0), blobs))
            if None in ulen_list:  # null means absent
                ulen_list = [u or 0 for u in ulen_list]
            ulens = array("I", ulen_list)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise IntegrityError(f"index {name}: invalid JSON structure: {e}") from e
        return cls(pack_ids, counts, ids, is_tree, offsets, lengths, ulens)


def _hex_ids(hexes: list[str], what: str) -> bytes:
    """64-hex-digit IDs -> concatenated 32-byte IDs (upper case accepted)."""
    raw = bytes.fromhex("".join(hexes))  # TypeError on a non-string
    if len(raw) != 32 * len(hexes) or any(map((64).__ne__, map(len, hexes))):
        raise ValueError(f"{what} ID is not 64 hex digits")
    return raw


def _blob_json(b: PackedBlob) -> dict[str, Any]:
    d: dict[str, Any] = {"id": b.id.hex(), "type": b.type.json_name, "offset": b.offset, "length": b.length}
    if b.uncompressed_length:
        d["uncompressed_length"] = b.uncompressed_length
    return d


def split_into_files(packs: Iterable[IndexPack], limit: int = MAX_BLOBS_PER_FILE) -> Iterator[IndexFile]:
    """Group packs into index files of at most ``limit`` blobs (a pack is never split)."""
    cur = IndexFile()
    for p in packs:
        if cur.packs and cur.blob_count + len(p.blobs) > limit:
            yield cur
            cur = IndexFile()
        cur.packs.append(p)
    if cur.packs:
        yield cur


__all__ = ["MAX_BLOBS_PER_FILE", "IndexColumns", "IndexFile", "IndexPack", "split_into_files"]
