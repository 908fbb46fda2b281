"""Index files (``index/<id>``): which blobs each pack holds (spec section 6).

    {"supersedes": [...], "packs": [{"id": PACK, "blobs": [{"id","type","offset","length"
                                                           [,"uncompressed_length"]}]}]}

Readers accept the old format (a bare ``packs`` array). Writers list every blob of every pack
they name and start a new file after ``MAX_BLOBS_PER_FILE`` blobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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


__all__ = ["MAX_BLOBS_PER_FILE", "IndexFile", "IndexPack", "split_into_files"]
