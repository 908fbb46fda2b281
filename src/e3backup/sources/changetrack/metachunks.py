"""Digests of the always-read metadata inside each chunk of the image grid.

The scans name the bytes that change without their record changing (the MFT and inode tables,
bitmaps, journals and logs, directory blocks, boot sectors; the partition table). Reading every
chunk that touches them made a 4 KiB directory block cost its whole 4 MiB chunk: NTFS's few MB of
scattered metadata cost ~100 MiB a backup. Instead each backup keeps, per chunk, a digest of the
metadata bytes in it; the next backup reads only those bytes again, digests them, and reads the
chunk only when the digest differs from the parent's (or the parent has none).

A digest is SHA-256 (truncated to 16 bytes) of the metadata ranges' places in the chunk and their
bytes, so a chunk whose metadata moved differs as well. Most metadata bytes are zeros (unused
inode slots, the unwritten part of a journal: 84 % of the 166 MB on the 8 GiB bench disk), so the
bytes are cut into 4 KiB pieces and the hash covers a map of the all-zero pieces and the bytes of
the others only: the same bytes give the same digest, any other bytes another (the map fixes
where each hashed piece goes), and a zero test runs ~20x faster than SHA-256. The parent's digest must describe the
bytes the parent *stored*: the engine digests every chunk it reads from the very buffer it stores
(``digest_chunk``), and a chunk is reused only when its digest now equals the parent's, so by
induction every stored digest describes the stored chunk, even on a live device without a
snapshot. Why reusing such a chunk is right: its metadata bytes are equal, its other planned bytes
belong to records that did not change (else the chunk holds changed data and is read), and its
unplanned bytes are zero in both (else the plans differ there and ``decide_chunks`` reads it).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from e3backup.repo.hashing import LANES
from e3backup.sources.device import BufferSource, ByteSource
from e3backup.sources.extents import ExtentList

DIGEST_BYTES = 16
PIECE = 4096  # the unit of the all-zero test
BATCH_BYTES = 64 << 20  # metadata held at once while digesting: bounds memory on any disk

Ranges = tuple[tuple[int, int], ...]  # (offset in the chunk, length), sorted


@dataclass(frozen=True)
class MetaChunks:
    """The metadata ranges of every chunk that has some (chunk index -> ranges in the chunk)."""

    chunk_size: int
    ranges: Mapping[int, Ranges]

    @classmethod
    def of(cls, metadata: ExtentList, chunk_size: int) -> MetaChunks:
        """Split ``metadata`` (device offsets) at the chunk boundaries."""
        out: dict[int, list[tuple[int, int]]] = {}
        for e in metadata:
            off = e.offset
            while off < e.end:
                index = off // chunk_size
                stop = min(e.end, (index + 1) * chunk_size)
                out.setdefault(index, []).append((off - index * chunk_size, stop - off))
                off = stop
        return cls(chunk_size, {i: tuple(r) for i, r in out.items()})

    def chunks(self) -> ExtentList:
        """The chunk indexes that hold metadata, as runs."""
        return ExtentList((i, 1) for i in self.ranges)

    def _header(self, index: int) -> bytes:
        flat = [n for pair in self.ranges[index] for n in pair]
        return struct.pack(f"<{len(flat) + 1}Q", len(flat) // 2, *flat)

    def digest_chunk(self, index: int, chunk: bytes | bytearray | memoryview) -> bytes | None:
        """The digest of chunk ``index`` from its bytes as stored; None when it holds no metadata."""
        if index not in self.ranges:
            return None
        view = memoryview(chunk)
        header = self._header(index)
        message = b"".join([header, *(view[o : o + n] for o, n in self.ranges[index])])
        return _digests([memoryview(message)], [len(header)])[0]

    def digest_source(self, source: ByteSource, indexes: Iterable[int]) -> dict[int, bytes]:
        """Digests of chunks ``indexes`` (those with metadata) from ``source`` (the whole disk),
        hashed in batches (the multi-buffer SHA-256 hashes up to 16 at once).

        The messages of a batch are built in buffers kept for the whole call: a fresh buffer
        per chunk cost a zero fill and page faults per byte, more than the hashing itself."""
        out: dict[int, bytes] = {}
        batch: list[int] = []
        messages: list[memoryview] = []
        pool: list[bytearray] = []
        held = 0

        headers: list[int] = []
        direct = source if isinstance(source, BufferSource) else None  # a Protocol check costs ~20 us: once

        def flush() -> None:
            nonlocal held
            for i, d in zip(batch, _digests(messages, headers), strict=True):
                out[i] = d
            batch.clear()
            messages.clear()
            headers.clear()
            held = 0

        for index in indexes:
            ranges = self.ranges.get(index)
            if ranges is None:
                continue
            base = index * self.chunk_size
            header = self._header(index)
            length = len(header) + sum(n for _, n in ranges)
            slot = len(messages)
            if slot == len(pool):
                pool.append(bytearray(length))
            elif len(pool[slot]) < length:
                pool[slot] = bytearray(length)
            view = memoryview(pool[slot])[:length]
            view[: len(header)] = header
            pos = len(header)
            for o, n in ranges:
                if direct is not None:  # straight into the message: one copy
                    got = direct.read_into(base + o, view[pos : pos + n])
                else:
                    data = source.read_at(base + o, n)
                    view[pos : pos + len(data)] = data
                    got = len(data)
                view[pos + got : pos + n] = bytes(n - got)  # past the device end: zeros
                pos += n
            batch.append(index)
            messages.append(view)
            headers.append(len(header))
            held += length
            if len(batch) >= LANES or held >= BATCH_BYTES:
                flush()
        if batch:
            flush()
        return out


def _digests(messages: Sequence[memoryview], header_lengths: Sequence[int]) -> list[bytes]:
    """The digest of each message (a header, then metadata bytes): SHA-256 of the header, the
    map of the all-zero 4 KiB pieces of the bytes, and the other pieces (a short tail as it is)."""
    compact = []
    for message, h in zip(messages, header_lengths, strict=True):
        body = np.frombuffer(message, dtype=np.uint8)[h:]
        full = len(body) // PIECE * PIECE
        pieces = body[:full].reshape(-1, PIECE)
        used = pieces.view(np.uint64).any(axis=1)
        zero_map = np.packbits(~used)
        prefix = np.frombuffer(message, dtype=np.uint8)[:h]
        compact.append(np.concatenate([prefix, zero_map, pieces[used].ravel(), body[full:]]))
    # hashlib, not the multi-buffer kernel: its lanes run in step, and these lengths vary widely
    return [hashlib.sha256(c.data).digest()[:DIGEST_BYTES] for c in compact]


__all__ = ["DIGEST_BYTES", "MetaChunks"]
