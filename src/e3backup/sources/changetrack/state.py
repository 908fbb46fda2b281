"""The change-tracking state stored with an image snapshot: one digest table per file system.

Binary layout (little-endian), small and self-describing::

    b"E3CT" | u16 version | u32 header length | header (JSON, UTF-8) | digest tables

The header holds ``since_verify`` (incrementals since the last full hash-compare read),
``chunk_size`` and ``meta_chunks`` (how many chunks have a metadata digest, ``metachunks.py``)
and, per tracked partition, ``partition`` (index), ``filesystem``, ``identity`` (what must not change for
the digests to stay comparable: serial/UUID, size, cluster or block size...), ``captured_at``
(Unix time of the scan), ``records`` and, for NTFS with a USN journal, ``usn`` (journal ID and
next USN; older readers ignore it). The tables follow in the same order, 8 bytes per record
(``digest.py``), so a volume of one million files costs 8 MB before compression. Then the chunk
digests: ``meta_chunks`` chunk indexes (u64) and as many 16-byte digests (an 8 GiB disk with
4 MiB chunks: at most 2,048, 48 KB). Version 1 (before the chunk digests) and version 2 (chunk
digests over every metadata byte, before the all-zero pieces were left out of the hash) decode
with none: their chunk digests are not comparable, so the next backup reads the metadata chunks
once. The repository encrypts and compresses the blob like any other.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e3backup.sources.changetrack.digest import Digests
from e3backup.sources.changetrack.metachunks import DIGEST_BYTES as CHUNK_DIGEST_BYTES
from e3backup.sources.errors import SourceError

MAGIC = b"E3CT"
VERSION = 3
CHUNK_DIGESTS_SINCE = 3  # older chunk digests hash every metadata byte: not comparable
DIGEST_BYTES = 8

Identity = dict[str, int | str]


class TrackingStateError(SourceError):
    """A stored change-tracking state that cannot be decoded."""


@dataclass(frozen=True)
class FsDigests:
    """The digests of one file system at one point in time."""

    partition: int
    filesystem: str
    identity: Identity
    captured_at: float
    digests: Digests = field(repr=False)
    journal: Identity | None = None  # NTFS: the USN journal's ID and next USN at the scan

    def header(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "partition": self.partition,
            "filesystem": self.filesystem,
            "identity": self.identity,
            "captured_at": self.captured_at,
            "records": len(self.digests),
        }
        if self.journal is not None:
            out["usn"] = self.journal
        return out


@dataclass(frozen=True)
class TrackingState:
    """Every tracked file system of a disk image, the verify-read counter, and the digests of the
    metadata in each chunk of a ``chunk_size`` grid (chunk index -> digest)."""

    partitions: tuple[FsDigests, ...] = ()
    since_verify: int = 0
    chunk_size: int = 0
    meta_chunks: Mapping[int, bytes] = field(default_factory=dict)

    def for_partition(self, index: int) -> FsDigests | None:
        return next((p for p in self.partitions if p.partition == index), None)

    def encode(self) -> bytes:
        meta = sorted(self.meta_chunks.items())
        header = json.dumps(
            {
                "since_verify": self.since_verify,
                "partitions": [p.header() for p in self.partitions],
                "chunk_size": self.chunk_size,
                "meta_chunks": len(meta),
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        parts = [MAGIC, struct.pack("<HI", VERSION, len(header)), header]
        parts += [p.digests.astype("<u8", copy=False).tobytes() for p in self.partitions]
        parts.append(np.array([i for i, _ in meta], dtype="<u8").tobytes())
        parts += [d for _, d in meta]
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> TrackingState:
        if len(data) < 10 or data[:4] != MAGIC:
            raise TrackingStateError("not a change-tracking state (bad magic)")
        version, hlen = struct.unpack_from("<HI", data, 4)
        if version > VERSION:
            raise TrackingStateError(f"change-tracking state version {version} is newer than {VERSION}")
        try:
            header = json.loads(data[10 : 10 + hlen])
            pos, parts = 10 + hlen, []
            for p in header["partitions"]:
                n = int(p["records"])
                raw = data[pos : pos + n * DIGEST_BYTES]
                if len(raw) != n * DIGEST_BYTES:
                    raise TrackingStateError("change-tracking state is truncated")
                pos += len(raw)
                parts.append(
                    FsDigests(
                        int(p["partition"]),
                        str(p["filesystem"]),
                        dict(p["identity"]),
                        float(p["captured_at"]),
                        np.frombuffer(raw, dtype="<u8").astype(np.uint64),
                        dict(p["usn"]) if p.get("usn") is not None else None,
                    )
                )
            count = int(header.get("meta_chunks", 0))
            raw = data[pos : pos + count * (8 + CHUNK_DIGEST_BYTES)]
            if len(raw) != count * (8 + CHUNK_DIGEST_BYTES):
                raise TrackingStateError("change-tracking state is truncated (chunk digests)")
            indexes = np.frombuffer(raw[: count * 8], dtype="<u8").tolist()
            digests = raw[count * 8 :]
            n = CHUNK_DIGEST_BYTES
            meta = {int(i): digests[k * n : (k + 1) * n] for k, i in enumerate(indexes)}
            if version < CHUNK_DIGESTS_SINCE:
                meta = {}
            return cls(tuple(parts), int(header.get("since_verify", 0)), int(header.get("chunk_size", 0)), meta)
        except (ValueError, KeyError, TypeError) as e:
            raise TrackingStateError(f"unreadable change-tracking state: {e}") from e


__all__ = ["DIGEST_BYTES", "FsDigests", "Identity", "TrackingState", "TrackingStateError"]
