"""Decoded blobs waiting for their SHA-256 check, and the page-aligned buffers they sit in.

The image restore's workers decode each blob into a buffer from this pool and write it to the
target at once; the blob's ID check then runs ``hashing.LANES`` blobs at a time (one
multi-buffer hash, ``check_blob_ids``), by whichever worker fills the batch. A buffer returns to
the pool only after its blob was checked, so the bytes hashed are the bytes written. A mismatch
fails the restore like any other error: the workers stop and a target file the run created is
removed, so a blob that fails its check never ends up in a restore that reports success.

Every worker calls ``finish`` when it runs out of segments, so no decoded blob is left unchecked:
each ``add`` is followed by that worker's own ``finish``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..errors import E3Error
from ..formats.direct import aligned_buffer
from ..repo.hashing import LANES
from ..repo.pack import PackedBlob
from ..repo.repository import check_blob_ids


@dataclass(frozen=True)
class Decoded:
    """A blob's plaintext (already written), at the start of its pool ``buffer``."""

    pack_id: str
    blob: PackedBlob
    plain: memoryview
    buffer: memoryview


class HashBatches:
    """``workers`` decoding at once, a batch being checked and a batch filling up: the pool holds
    ``workers + 2 * lanes`` buffers of ``buffer_size`` bytes (page-aligned, for direct writes); a
    single worker never checks and decodes at once, so ``1 + lanes`` do for it."""

    def __init__(self, buffer_size: int, workers: int, cancel: threading.Event, lanes: int = LANES) -> None:
        self.lanes = lanes
        self._free = [aligned_buffer(buffer_size) for _ in range(workers + lanes * min(workers, 2))]
        self._pending: list[Decoded] = []
        self._checking = 0
        self._cv = threading.Condition()
        self._cancel = cancel

    def take(self) -> memoryview:
        """A free buffer. With none free and no batch being checked, the waiting blobs are
        checked now (whatever their number), which frees their buffers."""
        while True:
            with self._cv:
                batch: list[Decoded] = []
                while not self._free and not batch:
                    if self._cancel.is_set():
                        raise E3Error("image restore cancelled: the target is incomplete")
                    if self._pending and not self._checking:
                        batch = self._grab()
                    else:
                        # released buffers and new blobs notify; the timeout only bounds a wait
                        # on a worker that died (its error has set the cancel event)
                        self._cv.wait(0.5)
                if not batch:
                    return self._free.pop()
            self.check(batch)

    def release(self, buffers: list[memoryview]) -> None:
        with self._cv:
            self._free.extend(buffers)
            self._cv.notify_all()

    def add(self, item: Decoded) -> list[Decoded]:
        """Queue a written blob; a full batch comes back for the caller to ``check``."""
        with self._cv:
            self._pending.append(item)
            self._cv.notify_all()
            return self._grab() if len(self._pending) >= self.lanes else []

    def check(self, batch: list[Decoded]) -> None:
        """Hash the batch together and compare with the blob IDs (``IntegrityError`` on the first
        mismatch); the buffers go back to the pool either way."""
        try:
            check_blob_ids([(d.pack_id, d.blob, d.plain) for d in batch])
        finally:
            with self._cv:
                self._checking -= 1
                self._free.extend(d.buffer for d in batch)
                self._cv.notify_all()

    def finish(self) -> None:
        """Check whatever is waiting (a worker that has no segment left calls this)."""
        with self._cv:
            batch = self._grab() if self._pending else []
        if batch:
            self.check(batch)

    def _grab(self) -> list[Decoded]:
        batch, self._pending = self._pending, []
        self._checking += 1
        return batch


__all__ = ["Decoded", "HashBatches"]
