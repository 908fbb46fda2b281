"""The restore plan: the snapshot's grid cut into segments of whole chunks, blobs located up front.

A chunk whose blob is an all-zero blob (everything outside the read plan is one, by
construction) writes nothing to a file target; every other chunk is looked up in the index
before anything is written, so a blob missing from the index fails the restore at once.
Within a segment, data chunks are grouped by pack, so each pack range is read once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import BlobNotFoundError
from ...repo.blob import BlobType
from ...repo.pack import PackedBlob
from ...repo.repository import Repository
from ...sources.stored_image import ImageSnapshot


@dataclass(frozen=True)
class Segment:
    """Chunks [first, end) of the grid: data chunks grouped by pack, and zero chunk indexes."""

    first: int
    end: int
    packs: dict[str, dict[PackedBlob, list[int]]]
    zero: list[int]


@dataclass(frozen=True)
class RestorePlan:
    image: ImageSnapshot
    segments: list[Segment]
    zero_chunks: int
    data_chunks: int

    def data_extents(self) -> list[tuple[int, int]]:
        """Merged (offset, length) ranges of the data chunks: the VHDX blocks to allocate."""
        out: list[tuple[int, int]] = []
        for seg in self.segments:
            for blobs in seg.packs.values():
                for chunks in blobs.values():
                    out.extend(self.image.chunk_span(i) for i in chunks)
        out.sort()
        merged: list[tuple[int, int]] = []
        for off, n in out:
            if merged and merged[-1][0] + merged[-1][1] == off:
                merged[-1] = (merged[-1][0], merged[-1][1] + n)
            else:
                merged.append((off, n))
        return merged


def plan_restore(repo: Repository, img: ImageSnapshot, segment_size: int, chunks: int | None = None) -> RestorePlan:
    """Segments of whole chunks; every data blob located in the index (or ``BlobNotFoundError``).
    ``chunks`` limits the plan to the grid's first chunks (a size-limited restore)."""
    per_segment = max(1, segment_size // img.chunk_size)
    count = img.chunk_count if chunks is None else min(chunks, img.chunk_count)
    zero_ids = img.zero_ids()
    segments: list[Segment] = []
    zero_total = data_total = 0
    for first in range(0, count, per_segment):
        end = min(first + per_segment, count)
        packs: dict[str, dict[PackedBlob, list[int]]] = {}
        zero: list[int] = []
        for i in range(first, end):
            blob_id = img.content[i]
            if blob_id in zero_ids:
                zero.append(i)
                continue
            loc = repo.index.lookup(BlobType.DATA, blob_id)
            if loc is None:
                off = i * img.chunk_size
                raise BlobNotFoundError(
                    f"data blob {blob_id.hex()} (disk offset {off}) of snapshot {img.snapshot.short_id} "
                    "is in no index: the repository is damaged (run check)"
                )
            packs.setdefault(loc.pack_id, {}).setdefault(loc.blob, []).append(i)
        zero_total += len(zero)
        data_total += end - first - len(zero)
        segments.append(Segment(first, end, packs, zero))
    return RestorePlan(img, segments, zero_total, data_total)


def chunk_runs(img: ImageSnapshot, chunks: list[int]) -> Iterator[tuple[int, int]]:
    """Merged (offset, length) of consecutive chunk indexes."""
    start = prev = -2
    for i in chunks:
        if i != prev + 1:
            if start >= 0:
                yield _span(img, start, prev)
            start = i
        prev = i
    if start >= 0:
        yield _span(img, start, prev)


def _span(img: ImageSnapshot, first: int, last: int) -> tuple[int, int]:
    off = img.chunk_span(first)[0]
    end_off, end_len = img.chunk_span(last)
    return off, end_off + end_len - off


__all__ = ["RestorePlan", "Segment", "chunk_runs", "plan_restore"]
