"""Saving blobs: dedup, compress, encrypt, pack and upload, with bounded concurrency.

Callers (engine worker threads) call ``save`` concurrently; hashing, zstd and AES release the
GIL, so compression and encryption run in the callers' threads. Full packs go through a bounded
queue to ``connections`` uploader threads, which gives back-pressure. After a pack is stored it
joins the in-memory index; index files are written every ``index_every`` packs and at ``flush``,
so a pack is always stored before any index names it, and an index before any snapshot uses it.
The first error cancels everything; ``save`` then raises it. With ``spill`` packs are built in
temporary files (``PackFileWriter``) instead of memory: prune uses it, to keep its memory small.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import E3Error
from ..store.base import FileType, Handle
from .blob import BlobType
from .compression import DEFAULT_LEVEL, compress
from .crypto import OVERHEAD
from .index import IndexPack, split_into_files
from .pack import PackedBlob, PackWriter
from .pack_file import PackFileWriter

if TYPE_CHECKING:
    from .repository import Repository

log = logging.getLogger(__name__)

DEFAULT_PACK_SIZE = 16 * 1024 * 1024
INDEX_EVERY_PACKS = 32
INDEX_EVERY_SECONDS = 300.0


@dataclass
class WriterStats:
    blobs_added: int = 0
    bytes_added: int = 0  # plaintext bytes of new blobs
    bytes_stored: int = 0  # encrypted bytes of new blobs
    packs: int = 0
    index_files: int = 0


class _Stop:
    pass


_Packer = PackWriter | PackFileWriter


class BlobWriter:
    """Scopes blob uploads; use as a context manager (flushes packs and index on success)."""

    def __init__(
        self,
        repo: Repository,
        pack_size: int = DEFAULT_PACK_SIZE,
        connections: int = 2,
        compression_level: int = DEFAULT_LEVEL,
        index_every: int = INDEX_EVERY_PACKS,
        spill: bool = False,
    ) -> None:
        self.repo = repo
        repo.remove_abandoned_temporaries()
        self.pack_size = pack_size
        self.compression_level = compression_level
        self.index_every = index_every
        self.spill = spill
        self.stats = WriterStats()
        self._mu = threading.Lock()
        self._claimed: dict[BlobType, set[bytes]] = {BlobType.DATA: set(), BlobType.TREE: set()}
        self._packers: dict[BlobType, _Packer | None] = {BlobType.DATA: None, BlobType.TREE: None}
        # one full pack waits while the uploaders work: enough to keep them busy, and memory
        # (or temporary files, with spill) stays at (connections + 2) packs whatever the data
        self._queue: queue.Queue[_Packer | _Stop] = queue.Queue(maxsize=1)
        self._unindexed: list[IndexPack] = []
        self.stored: list[IndexPack] = []  # every pack this writer stored, in upload order
        self._last_index = time.monotonic()
        self._error: BaseException | None = None
        self._cancel = threading.Event()
        self._uploaders = [
            threading.Thread(target=self._upload_loop, name=f"uploader-{i}", daemon=True)
            for i in range(max(1, connections))
        ]
        for t in self._uploaders:
            t.start()
        self._closed = False

    # -- saving -------------------------------------------------------------------------------

    def save(
        self, blob_type: BlobType, data: bytes | memoryview, blob_id: bytes | None = None, compressed: bool = True
    ) -> tuple[bytes, bool]:
        """Store a blob unless it exists; returns ``(id, added)``."""
        self._raise_if_failed()
        if blob_id is None:
            blob_id = hashlib.sha256(data).digest()
        index = self.repo.index
        with self._mu:
            claimed = self._claimed[blob_type]
            if blob_id in claimed or index.has(blob_type, blob_id):
                return blob_id, False
            claimed.add(blob_id)
        n = len(data)
        if compressed and n:
            payload: bytes | memoryview = compress(data, self.compression_level)
            ulen = n
            if len(payload) >= n and blob_type is BlobType.DATA:
                # incompressible (random, already compressed): stored as it is (a type 0 blob, which
                # every reader of a v2 repository accepts; restic would keep zstd's 30-40 bytes a
                # MiB of framing). A restore then decrypts it straight into place: no decompressor
                # copy of every byte. Tree blobs stay compressed: restic's prune repacks v2 packs
                # holding uncompressed trees.
                payload, ulen = data, 0
        else:
            payload, ulen = data, 0
        sealed = self.repo.key.seal(payload)
        full: _Packer | None = None
        with self._mu:
            packer = self._packers[blob_type]
            if packer is None:
                packer = self._packers[blob_type] = self._new_packer(blob_type)
            packer.add_sealed(blob_id, sealed, ulen)
            self.stats.blobs_added += 1
            self.stats.bytes_added += n
            self.stats.bytes_stored += len(sealed)
            if packer.size >= self.pack_size:
                full = packer
                self._packers[blob_type] = None
        if full is not None:
            self._enqueue(full)
        return blob_id, True

    def save_sealed(
        self, blob_type: BlobType, blob_id: bytes, sealed: bytes | memoryview, uncompressed_length: int
    ) -> bool:
        """Add a blob already sealed with the repository key (prune copies verified blobs as is).

        Deduplicates only against blobs pending in this writer, not against the index: the
        caller copies blobs out of packs that are about to be deleted. Returns whether it was added.
        """
        self._raise_if_failed()
        full: _Packer | None = None
        with self._mu:
            claimed = self._claimed[blob_type]
            if blob_id in claimed:
                return False
            claimed.add(blob_id)
            packer = self._packers[blob_type]
            if packer is None:
                packer = self._packers[blob_type] = self._new_packer(blob_type)
            if isinstance(packer, PackWriter):  # it keeps the blob: never a view of the caller's buffer
                packer.add_sealed(blob_id, bytes(sealed), uncompressed_length)
            else:
                packer.add_sealed(blob_id, sealed, uncompressed_length)
            self.stats.blobs_added += 1
            self.stats.bytes_added += uncompressed_length or len(sealed) - OVERHEAD
            self.stats.bytes_stored += len(sealed)
            if packer.size >= self.pack_size:
                full = packer
                self._packers[blob_type] = None
        if full is not None:
            self._enqueue(full)
        return True

    def _new_packer(self, blob_type: BlobType) -> _Packer:
        if self.spill:
            return PackFileWriter(self.repo.key, blob_type)
        return PackWriter(self.repo.key, blob_type)

    def is_known(self, blob_type: BlobType, blob_id: bytes) -> bool:
        """True when the blob is stored or pending in this writer."""
        with self._mu:
            if blob_id in self._claimed[blob_type]:
                return True
        return self.repo.index.has(blob_type, blob_id)

    def _enqueue(self, packer: _Packer) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(packer, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            if isinstance(self._error, E3Error):
                raise self._error
            raise E3Error(f"upload failed: {self._error}") from self._error

    # -- uploading ----------------------------------------------------------------------------

    def _upload_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if isinstance(item, _Stop):
                    return
                if self._cancel.is_set():
                    if isinstance(item, PackFileWriter):
                        item.close()
                    continue
                pack_id, blobs = self._store(item)
                self.repo.index.add_pack(pack_id, blobs)
                with self._mu:
                    self.stats.packs += 1
                    self._unindexed.append(IndexPack(pack_id, blobs))
                    self.stored.append(IndexPack(pack_id, blobs))
                    due = len(self._unindexed) >= self.index_every or (
                        time.monotonic() - self._last_index > INDEX_EVERY_SECONDS
                    )
                if due:
                    self.write_index()
            except BaseException as e:
                with self._mu:
                    if self._error is None:
                        self._error = e
                self._cancel.set()
            finally:
                self._queue.task_done()

    def _store(self, packer: _Packer) -> tuple[str, list[PackedBlob]]:
        """Finish and upload one pack (and cache it if it holds trees)."""
        if isinstance(packer, PackFileWriter):
            pack_id, f, blobs = packer.finish()
            with f:
                self.repo.store.save_file(Handle(FileType.PACK, pack_id), f, f.seek(0, os.SEEK_END))
                if packer.blob_type is BlobType.TREE and self.repo.cache is not None:
                    f.seek(0)
                    self.repo.cached_tree_pack(pack_id, f.read())
            return pack_id, blobs
        pack_id, data, blobs = packer.finish()
        self.repo.store.save(Handle(FileType.PACK, pack_id), data)
        if packer.blob_type is BlobType.TREE:
            self.repo.cached_tree_pack(pack_id, data)
        return pack_id, blobs

    def write_index(self) -> list[str]:
        """Write index files for every stored pack not yet in one."""
        with self._mu:
            packs, self._unindexed = self._unindexed, []
            self._last_index = time.monotonic()
        ids = []
        try:
            for f in split_into_files(packs):
                ids.append(self.repo.save_unpacked(FileType.INDEX, f.to_json()))
        except BaseException:
            with self._mu:
                self._unindexed = packs + self._unindexed
            raise
        with self._mu:
            self.stats.index_files += len(ids)
        return ids

    # -- finishing ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Upload open packs, wait for all uploads, write the index. Raises the first error."""
        with self._mu:
            open_packers = [p for p in self._packers.values() if p is not None and p.count]
            self._packers = {BlobType.DATA: None, BlobType.TREE: None}
        for p in open_packers:
            self._enqueue(p)
        self._queue.join()
        self._raise_if_failed()
        self.write_index()

    def close(self, success: bool = True, index_stored: bool = True) -> None:
        """Stop the uploaders. On failure, index what was stored so a later run reuses it, unless
        ``index_stored`` is false (a competitor holds the repository: its packs are left for the
        next run to adopt, never indexed behind a prune's back)."""
        if self._closed:
            return
        self._closed = True
        try:
            if success:
                self.flush()
        finally:
            if not success:
                self._cancel.set()
            for _ in self._uploaders:
                self._queue.put(_Stop())
            for t in self._uploaders:
                t.join()
            if not success and index_stored and self._unindexed:
                try:
                    self.write_index()
                except E3Error as e:  # the error that ended the run is the one to tell
                    log.debug("could not write the index of stored packs (the next backup adopts them): %s", e)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(success=exc_type is None)


__all__ = ["DEFAULT_PACK_SIZE", "BlobWriter", "WriterStats"]
