"""Buffers waiting for their SHA-256 check, and the page-aligned pool they come from.

The image restore's workers decode each blob into a buffer from this pool and write it to the
target at once (``--verify``: read a chunk back into one); the check against the blob's ID then
runs ``hashing.LANES`` buffers at a time (one multi-buffer hash), by whichever worker fills the
batch. A buffer returns to the pool only after it was checked, so the bytes hashed are the bytes
written. A restore's mismatch fails it like any other error: the workers stop and a target file
the run created is removed, so a blob that fails its check never ends up in a restore that
reports success.

``finish`` checks whatever still waits: the restore calls it once every write is done, and
verify's workers each call it when they run out of segments (each ``add`` is followed by that
worker's own ``finish``), so nothing is left unchecked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

from ..errors import E3Error
from ..formats.direct import aligned_buffer
from ..repo.hashing import LANES


class Pooled(Protocol):
    @property
    def buffer(self) -> memoryview:
        """The pool buffer the item's bytes sit in."""
        ...


T = TypeVar("T", bound=Pooled)


class HashBatches(Generic[T]):
    """Items (each holding a pool ``buffer``) checked ``lanes`` at a time by ``check``, which
    hashes them together (``hashing.sha256_many``).

    ``workers`` decoding at once, a batch being checked and a batch filling up: the pool holds
    ``workers + 2 * lanes`` buffers of ``buffer_size`` bytes (page-aligned, for direct writes); a
    single worker never checks and decodes at once, so ``1 + lanes`` do for it. Blobs waiting
    for their write hold buffers too: ``take`` blocking is the restore's back-pressure (with 24
    buffers for 8 workers batches ran short and the restore was 25 % slower; 56 gained nothing)."""

    def __init__(
        self,
        buffer_size: int,
        workers: int,
        cancel: threading.Event,
        check: Callable[[list[T]], None],
        lanes: int = LANES,
        buffers: int | None = None,
    ) -> None:
        """``buffers`` (the memory budget's pool, at least 2) replaces the default count."""
        self.lanes = lanes
        self._check = check
        count = workers + lanes * min(workers, 2) if buffers is None else max(2, buffers)
        self._free = [aligned_buffer(buffer_size) for _ in range(count)]
        self._pending: list[T] = []
        self._checking = 0
        self._cv = threading.Condition()
        self._cancel = cancel

    def take(self) -> memoryview:
        """A free buffer. With none free and no batch being checked, the waiting blobs are
        checked now (whatever their number), which frees their buffers."""
        while True:
            with self._cv:
                batch: list[T] = []
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

    @contextmanager
    def back_on_error(self, buffer: memoryview) -> Iterator[None]:
        """Filling ``buffer``: if that fails, it goes back to the pool (and the error on)."""
        try:
            yield
        except BaseException:
            self.release([buffer])
            raise

    def add(self, item: T) -> list[T]:
        """Queue an item; a full batch comes back for the caller to ``check``."""
        with self._cv:
            self._pending.append(item)
            self._cv.notify_all()
            return self._grab() if len(self._pending) >= self.lanes else []

    def check(self, batch: list[T]) -> None:
        """Run ``check`` on the batch; the buffers go back to the pool whether it raises or not."""
        try:
            self._check(batch)
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

    def _grab(self) -> list[T]:
        batch, self._pending = self._pending, []
        self._checking += 1
        return batch


__all__ = ["HashBatches", "Pooled"]
