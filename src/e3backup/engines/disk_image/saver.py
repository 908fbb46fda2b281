"""Storing one chunk: zero check, SHA-256, index lookup (dedup), then zstd + AES + pack.

Runs in the saver threads; hashlib, zstd and AES release the GIL, so savers scale with cores.
The blob writer compresses and encrypts in the calling thread and hands full packs to its
uploader threads, whose bounded queue gives back-pressure down to the readers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ...repo.blob import BlobType
from ...repo.writer import BlobWriter
from .chunker import ZeroBlobs


@dataclass(frozen=True)
class Saved:
    blob_id: bytes
    zero: bool  # all zeros: no hash, no compression, no upload
    known: bool  # already in the repository (or pending in this run): nothing uploaded
    added: bool  # stored now


class ChunkSaver:
    def __init__(self, writer: BlobWriter, zero_blobs: ZeroBlobs) -> None:
        self.writer = writer
        self.zero_blobs = zero_blobs

    def save(self, view: memoryview, buf: bytearray) -> Saved:
        """Store the chunk in ``view`` (a prefix of ``buf``) unless it is zero or known."""
        n = len(view)
        if self.zero_blobs.is_zero(buf if n == len(buf) else view):
            return Saved(self.zero_blobs.id_for(n), True, True, False)
        blob_id = hashlib.sha256(view).digest()
        if self.writer.is_known(BlobType.DATA, blob_id):
            return Saved(blob_id, False, True, False)
        _, added = self.writer.save(BlobType.DATA, view, blob_id)
        return Saved(blob_id, False, not added, added)

    def store_zero_blobs(self) -> int:
        """Store the all-zero blobs once (a no-op when the repository has them); returns bytes added."""
        added = 0
        for n, blob_id in self.zero_blobs.ids.items():
            _, new = self.writer.save(BlobType.DATA, memoryview(self.zero_blobs.zeros)[:n], blob_id)
            added += n if new else 0
        return added


__all__ = ["ChunkSaver", "Saved"]
