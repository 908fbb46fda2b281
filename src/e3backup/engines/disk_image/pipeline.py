"""The image pipeline: dispatcher -> reader threads -> saver threads, over bounded queues.

    dispatcher (caller's thread)  walks the grid in order: zero chunks and reused chunks get
                                  their blob ID at once; chunks to read go to a bounded queue
    readers (``parallel``)        pread the planned bytes into pooled buffers
    savers (one per core)         zero check, SHA-256, dedup lookup, zstd + AES + pack
    uploaders (in BlobWriter)     store full packs

Chunks finish out of order; each writes its blob ID into its slot of the content list, so the
content follows the grid. The buffer pool and the two queues bound memory: at most
``readers + queue_depth + savers`` chunks are in flight, whatever the disk size. One stop event:
a cancel from outside or the first error in any thread stops every stage within one chunk; the
first error is the one raised.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import Cancelled
from ...progress import Progress
from ...sources.changemap import ChunkAction, ChunkDecisions
from .chunker import ChunkGrid, ZeroBlobs
from .reader import BufferPool, ChunkReader
from .saver import ChunkSaver

_END = None
_POLL = 0.2


@dataclass
class PipelineStats:
    chunks_read: int = 0
    chunks_reused: int = 0
    chunks_zero: int = 0
    chunks_known: int = 0
    chunks_new: int = 0
    bytes_read: int = 0


class ImagePipeline:
    def __init__(
        self,
        grid: ChunkGrid,
        decisions: ChunkDecisions,
        reader: ChunkReader,
        saver: ChunkSaver,
        zero_blobs: ZeroBlobs,
        parent_content: list[bytes] | None,
        parent_blob_ok: Callable[[bytes], bool],
        readers: int,
        savers: int,
        queue_depth: int,
        progress: Progress,
        cancel: threading.Event | None = None,
        inspect: Callable[[int, memoryview], None] | None = None,
    ) -> None:
        """``inspect(index, chunk)`` sees every chunk read, as it will be stored (reader threads)."""
        self.grid = grid
        self.decisions = decisions
        self.reader = reader
        self.saver = saver
        self.zero_blobs = zero_blobs
        self.parent_content = parent_content
        self.parent_blob_ok = parent_blob_ok
        self.n_readers = readers
        self.n_savers = savers
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.inspect = inspect
        self.stats = PipelineStats()
        self.content: list[bytes | None] = [None] * grid.count
        self._stop = threading.Event()
        self._mu = threading.Lock()
        self._error: BaseException | None = None
        self._read_q: queue.Queue[int | None] = queue.Queue(maxsize=2 * readers)
        self._save_q: queue.Queue[tuple[int, memoryview, bytearray, int] | None] = queue.Queue(maxsize=queue_depth)
        self._pool = BufferPool(readers + queue_depth + savers, grid.chunk_size)

    # -- running ------------------------------------------------------------------------------

    def run(self) -> list[bytes]:
        """Process every chunk; returns the content IDs in grid order. Raises the first error."""
        readers = [self._thread(self._read_loop, f"image-reader-{i}") for i in range(self.n_readers)]
        savers = [self._thread(self._save_loop, f"image-saver-{i}") for i in range(self.n_savers)]
        try:
            self._dispatch()
            for _ in readers:
                self._put(self._read_q, _END)
            self._join(readers)
            for _ in savers:
                self._put(self._save_q, _END)
            self._join(savers)
            self._check()
        except BaseException as e:
            self._fail(e)
            self._stop.set()
            self._join(readers + savers)
            raise self._error or e from None
        missing = [i for i, c in enumerate(self.content) if c is None]
        if missing:
            raise RuntimeError(f"image pipeline left {len(missing)} chunks without a blob (first {missing[0]})")
        return [c for c in self.content if c is not None]

    def _thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=self._guard, args=(target,), name=name, daemon=True)
        t.start()
        return t

    def _join(self, threads: list[threading.Thread]) -> None:
        for t in threads:
            while t.is_alive():
                t.join(_POLL)
                self._check()

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Cancelled:
            pass
        except BaseException as e:
            self._fail(e)

    def fail(self, e: BaseException) -> None:
        """Stop every stage with ``e`` as the run's error (from outside: the stall monitor)."""
        self._fail(e)

    def _fail(self, e: BaseException) -> None:
        with self._mu:
            if self._error is None and not isinstance(e, Cancelled):
                self._error = e
        self._stop.set()

    def _stopped(self) -> bool:
        return self._stop.is_set() or self.cancel.is_set()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        if self._stop.is_set():
            raise Cancelled("stopped")

    def _put(self, q: queue.Queue[Any], item: Any) -> None:
        while True:
            try:
                q.put(item, timeout=_POLL)
                return
            except queue.Full:
                if self._stopped():
                    raise Cancelled() from None

    def _get(self, q: queue.Queue[Any]) -> Any:
        while True:
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                if self._stopped():
                    raise Cancelled() from None

    # -- stages -------------------------------------------------------------------------------

    def _done(self, length: int, **counts: int) -> None:
        with self._mu:
            for k, v in counts.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)
            bytes_read = self.stats.bytes_read
        self.progress.add(nbytes=length)
        self.progress.set_extra(bytes_read=bytes_read)

    def _dispatch(self) -> None:
        for action, first, end in self.decisions.runs():
            self._check()
            if action is ChunkAction.ZERO:
                for i in range(first, end):
                    self.content[i] = self.zero_blobs.id_for(self.grid.span(i)[1])
                self._done(self.grid.bytes_of(first, end), chunks_zero=end - first)
                continue
            for i in range(first, end):
                if action is ChunkAction.REUSE and self.parent_content is not None:
                    blob = self.parent_content[i]
                    if self.parent_blob_ok(blob):
                        self.content[i] = blob
                        self._done(self.grid.span(i)[1], chunks_reused=1)
                        continue
                self._put(self._read_q, i)
                if i % 64 == 0:
                    self._check()

    def _read_loop(self) -> None:
        while True:
            index = self._get(self._read_q)
            if index is _END:
                return
            buf = self._pool.get(self._stop)
            if self._stopped():
                raise Cancelled()
            view, nread = self.reader.read(index, buf)
            if self.inspect is not None:
                self.inspect(index, view)
            with self._mu:
                self.stats.chunks_read += 1
                self.stats.bytes_read += nread
            self._put(self._save_q, (index, view, buf, nread))

    def _save_loop(self) -> None:
        while True:
            item = self._get(self._save_q)
            if item is _END:
                return
            index, view, buf, _nread = item
            try:
                if self._stopped():
                    raise Cancelled()
                saved = self.saver.save(view, buf)
            finally:
                self._pool.put(buf)
            self.content[index] = saved.blob_id
            self._done(
                len(view),
                chunks_zero=int(saved.zero),
                chunks_known=int(saved.known and not saved.zero),
                chunks_new=int(saved.added),
            )


__all__ = ["ImagePipeline", "PipelineStats"]
