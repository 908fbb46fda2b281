"""Restore a disk image snapshot to a raw file, a block device or a VHDX (``image restore``/``export``).

1. Plan: the snapshot's grid (``<name>.img`` content) and ``layout.json``. A chunk whose blob is
   the all-zero blob (everything outside the read plan is one, by construction) writes nothing
   to a file target: it stays a hole. Every other chunk is looked up in the index up front, so
   a blob missing from the index fails before anything is written.
2. Segments of ``segment_size`` bytes (whole chunks) go to ``workers`` threads, in disk order.
   Within a segment, chunks are grouped by pack and each needed pack range is read once
   (``packs.sealed_blobs``); each blob is decrypted once (MAC checked), into a page-aligned
   buffer from the ``hash_batches`` pool, and written from there to every chunk that holds it.
   Writes go past the page cache (``formats.direct``): no byte is copied after decryption or
   decompression. The blobs' SHA-256 IDs are then checked 16 at a time (multi-buffer hashing);
   a mismatch fails the restore before it can report success.
3. Each worker has its own target handle (a raw file or device opened per worker; a VHDX writer
   is shared, its ``write_at`` is positional and thread-safe). A worker hands each decoded blob
   to ``workers`` I/O threads and decodes the next meanwhile; the pool of ``hash_batches`` is
   the back-pressure. The chunks written are counted against the plan at the end. A block
   device keeps whatever it held, so there data chunks are written whole (zeros included) and
   zero chunks are zeroed (BLKZEROOUT, falling back to writes) or discarded (``discard``): stale
   data never survives.
4. ``verify`` re-reads the finished target (through the VHDX reader for a VHDX) and checks every
   chunk: data chunks against their blob IDs (16 at a time, as above), zero chunks all zero.

The first error in any worker stops the others; a file target the run created is removed, so a
failed restore never leaves something that looks complete.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import BlobNotFoundError, E3Error, IntegrityError, LockError, UsageError
from ..formats.direct import ALIGN
from ..formats.factory import FORMATS, create_image_writer, open_image_reader
from ..formats.image import ImageReader, ImageWriter, is_zero
from ..formats.raw import RawReader, RawWriter
from ..formats.vhdx.layout import VhdxOptions
from ..progress import Progress
from ..repo.blob import BlobType
from ..repo.hashing import sha256_many
from ..repo.pack import PackedBlob
from ..repo.repository import Repository, check_blob_ids
from ..repo.snapshot_filter import SnapshotFilter
from ..sources.stored_image import ImageSnapshot, image_snapshots, load_image_snapshot
from ..tuning import fewer_collections
from .hash_batches import HashBatches
from .packs import scratch_buffer, sealed_blobs
from .target import Target, check_target

MiB = 1 << 20
DEFAULT_WORKERS = 8
DEFAULT_SEGMENT_MB = 32


@dataclass(frozen=True)
class ImageRestoreOptions:
    target: str
    image_format: str = "raw"
    workers: int = DEFAULT_WORKERS
    """Policy ``restore_parallel_workers``."""
    segment_size: int = DEFAULT_SEGMENT_MB * MiB
    """Policy ``restore_segment_size_mb``; rounded to whole chunks."""
    verify: bool = False
    discard: bool = False
    """Block devices: discard zero ranges instead of writing zeros (the device must read discarded
    sectors as zero — true for loop devices and most SSDs with deterministic TRIM)."""
    force: bool = False
    vhdx_options: VhdxOptions | None = None

    @classmethod
    def from_policy(cls, target: str, policy: Mapping[str, Any], **kw: Any) -> ImageRestoreOptions:
        """Options from the seeds' policy flags; explicit keywords win."""
        workers = int(policy.get("restore_parallel_workers") or DEFAULT_WORKERS)
        seg = int(policy.get("restore_segment_size_mb") or DEFAULT_SEGMENT_MB) * MiB
        return cls(target=target, **{"workers": workers, "segment_size": seg, **kw})


@dataclass
class ImageRestoreResult:
    snapshot_id: str = ""
    target: str = ""
    image_format: str = "raw"
    block_device: bool = False
    file_name: str = ""
    device_size: int = 0
    chunk_size: int = 0
    plan_bytes: int = 0
    chunks_total: int = 0
    chunks_written: int = 0
    chunks_zero: int = 0
    bytes_written: int = 0
    bytes_zeroed: int = 0
    bytes_fetched: int = 0
    pack_reads: int = 0
    workers: int = 0
    segment_size: int = 0
    verified: bool = False
    chunks_verified: int = 0
    duration: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary_json(self) -> dict[str, object]:
        return {
            "message_type": "summary",
            "snapshot_id": self.snapshot_id,
            "target": self.target,
            "format": self.image_format,
            "block_device": self.block_device,
            "file_name": self.file_name,
            "device_size": self.device_size,
            "chunk_size": self.chunk_size,
            "plan_bytes": self.plan_bytes,
            "chunks_total": self.chunks_total,
            "chunks_written": self.chunks_written,
            "chunks_zero": self.chunks_zero,
            "bytes_written": self.bytes_written,
            "bytes_zeroed": self.bytes_zeroed,
            "bytes_fetched": self.bytes_fetched,
            "pack_reads": self.pack_reads,
            "workers": self.workers,
            "segment_size": self.segment_size,
            "verified": self.verified,
            "chunks_verified": self.chunks_verified,
            "duration": round(self.duration, 3),
        }


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


def plan_restore(repo: Repository, img: ImageSnapshot, segment_size: int) -> RestorePlan:
    """Segments of whole chunks; every data blob located in the index (or ``BlobNotFoundError``)."""
    per_segment = max(1, segment_size // img.chunk_size)
    zero_ids = img.zero_ids()
    segments: list[Segment] = []
    zero_total = data_total = 0
    for first in range(0, img.chunk_count, per_segment):
        end = min(first + per_segment, img.chunk_count)
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


@dataclass(frozen=True)
class Decoded:
    """A blob's plaintext (already written), at the start of its pool ``buffer``."""

    pack_id: str
    blob: PackedBlob
    plain: memoryview
    buffer: memoryview


def _check_decoded(batch: list[Decoded]) -> None:
    check_blob_ids([(d.pack_id, d.blob, d.plain) for d in batch])


@dataclass(frozen=True)
class ReadBack:
    """A data chunk read back from the target for ``verify``, at the start of its pool ``buffer``."""

    index: int
    offset: int
    want: bytes
    data: memoryview
    buffer: memoryview


class _Worker:
    """One worker's handle on the target."""

    def __init__(self, writer: ImageWriter, own: bool) -> None:
        self.writer = writer
        self.own = own

    def close(self) -> None:
        if self.own:
            self.writer.close()


class ImageRestorer:
    """Runs one restore; ``after_write`` (tests) is called between writing and verifying."""

    def __init__(
        self,
        repo: Repository,
        opts: ImageRestoreOptions,
        progress: Progress | None = None,
        after_write: Callable[[], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        if opts.image_format not in FORMATS:
            raise UsageError(f"unknown image format {opts.image_format!r}, expected one of {', '.join(FORMATS)}")
        if opts.workers < 1:
            raise UsageError("workers must be at least 1")
        self.repo = repo
        self.opts = opts
        self.progress = progress or Progress(mode="quiet")
        self.after_write = after_write
        self.cancel = cancel or threading.Event()
        self.result = ImageRestoreResult()
        self._mu = threading.Lock()
        self._error: BaseException | None = None

    def run(self, img: ImageSnapshot) -> ImageRestoreResult:
        started = time.monotonic()
        self._image = img
        o, r = self.opts, self.result
        target = check_target(o.target, o.image_format, img.device_size, o.force)
        plan = plan_restore(self.repo, img, o.segment_size)
        r.snapshot_id, r.target, r.image_format = img.snapshot.id, o.target, o.image_format
        r.block_device, r.file_name, r.device_size = target.is_block_device, img.file_name, img.device_size
        r.chunk_size, r.plan_bytes, r.chunks_total = img.chunk_size, img.plan.total_bytes, img.chunk_count
        r.workers, r.segment_size = o.workers, max(1, o.segment_size // img.chunk_size) * img.chunk_size
        self.progress.set_total(img.device_size)
        self.progress.set_extra(device_size=img.device_size, plan_bytes=r.plan_bytes, bytes_written=0)
        try:
            self._write(plan, target)
            if self.after_write is not None:
                self.after_write()
            if o.verify:
                self._verify(plan, target)
        except BaseException:
            if not target.existed and not target.is_block_device:
                with contextlib.suppress(OSError):
                    os.unlink(o.target)
            raise
        r.duration = time.monotonic() - started
        return r

    # -- writing -------------------------------------------------------------------------------

    def _write(self, plan: RestorePlan, target: Target) -> None:
        o = self.opts
        size = plan.image.device_size
        # a single worker waits for each direct write with nothing to overlap it: the page cache
        # (with early write-back) lets its CPU and the disk work together (measured on a dense
        # 2 GiB disk, median of 3: 7.1 s against 9.7 s)
        shared = create_image_writer(
            o.image_format,  # type: ignore[arg-type]
            o.target,
            size,
            plan.data_extents(),
            o.vhdx_options,
            direct=o.workers > 1,
        )
        ok = False
        try:
            workers: list[_Worker] = []
            try:
                for _ in range(o.workers):  # a raw target: a handle each; a VHDX writer is shared
                    if isinstance(shared, RawWriter):
                        workers.append(_Worker(shared.reopen(), True))
                    else:
                        workers.append(_Worker(shared, False))
                # blob IDs are checked in batches as blobs are written (``hash_batches``)
                self._batches = HashBatches(plan.image.chunk_size + ALIGN, o.workers, self.cancel, _check_decoded)
                self._writes = ThreadPoolExecutor(o.workers, thread_name_prefix="image-write")
                with fewer_collections():
                    try:
                        self._run_workers(plan.segments, [functools.partial(self._restore_segment, w) for w in workers])
                    except BaseException:
                        self._writes.shutdown(wait=True, cancel_futures=True)  # failing: drop queued writes
                        raise
                    self._writes.shutdown(wait=True)  # every queued write runs
                    if self._error is not None:  # an I/O thread failed after the workers were done
                        raise self._error
                    self._batches.finish()  # every write is done: check the blobs still waiting
                if self.result.chunks_written != plan.data_chunks:  # a lost write must never pass as done
                    raise E3Error(
                        f"image restore wrote {self.result.chunks_written} of {plan.data_chunks} data chunks: "
                        "the target is incomplete"
                    )
            finally:
                _close_all(workers)
            ok = True
        finally:
            if ok:
                shared.close()
            elif hasattr(shared, "abort"):
                shared.abort()
            else:
                shared.close()

    def _restore_segment(self, worker: _Worker, seg: Segment) -> None:
        img, writer = self._image, worker.writer
        if seg.zero:
            zeroed = 0
            for off, n in _runs(img, seg.zero):
                if self.result.block_device:
                    assert isinstance(writer, RawWriter)
                    writer.zero_range(off, n, "discard" if self.opts.discard else "zeroout")
                    zeroed += n
                self.progress.add(nbytes=n)
            with self._mu:
                self.result.chunks_zero += len(seg.zero)
                self.result.bytes_zeroed += zeroed
        batches = self._batches
        for pack_id, blobs in sorted(seg.packs.items(), key=lambda kv: min(min(c) for c in kv[1].values())):
            fetched = sum(b.length for b in blobs)
            for blob, sealed in sealed_blobs(self.repo, pack_id, list(blobs)):
                if self.cancel.is_set():
                    return
                spans = [img.chunk_span(i) for i in blobs[blob]]
                size = blob.plaintext_length
                for i, (_, n) in zip(blobs[blob], spans, strict=True):
                    if size != n:
                        raise IntegrityError(
                            f"data blob {blob.id.hex()} in pack {pack_id} holds {size} bytes, "
                            f"chunk {i} of the disk has {n}"
                        )
                buffer = batches.take()
                with batches.back_on_error(buffer):
                    plain = self.repo.open_blob_into(pack_id, blob, sealed, buffer, scratch_buffer(blob.length))
                # the write goes to the I/O threads: this worker decodes the next blob meanwhile
                self._writes.submit(self._write_blob, writer, spans, Decoded(pack_id, blob, plain, buffer))
            with self._mu:
                self.result.bytes_fetched += fetched
                self.result.pack_reads += 1
        self.progress.set_extra(bytes_written=self.result.bytes_written)

    def _write_blob(self, writer: ImageWriter, spans: list[tuple[int, int]], d: Decoded) -> None:
        """An I/O thread's job: write a decoded blob to its chunks, then queue it for its ID check
        (the buffer goes back to the pool once checked). The first error stops the restore."""
        batches = self._batches
        try:
            if self.cancel.is_set():
                batches.release([d.buffer])
                return
            with batches.back_on_error(d.buffer):
                for off, n in spans:
                    writer.write_at(off, d.plain)
                    self.progress.add(nbytes=n)
            with self._mu:
                self.result.chunks_written += len(spans)
                self.result.bytes_written += len(d.plain) * len(spans)
            ready = batches.add(d)
            if ready:
                batches.check(ready)
        except BaseException as e:
            with self._mu:
                if self._error is None:
                    self._error = e
            self.cancel.set()

    def _run_workers(
        self, segments: list[Segment], jobs: list[Callable[[Segment], None]], finish: Callable[[], None] | None = None
    ) -> None:
        """Each job pulls segments in disk order, then calls ``finish``; the first error stops
        every job and is raised."""
        it: Iterator[Segment] = iter(segments)
        it_lock = threading.Lock()

        def loop(job: Callable[[Segment], None]) -> None:
            try:
                while not self.cancel.is_set():
                    with it_lock:
                        seg = next(it, None)
                    if seg is None:
                        break
                    job(seg)
                if finish is not None and not self.cancel.is_set():
                    finish()
            except BaseException as e:
                with self._mu:
                    if self._error is None:
                        self._error = e
                self.cancel.set()

        threads = [threading.Thread(target=loop, args=(j,), name=f"image-restore-{n}") for n, j in enumerate(jobs)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
        except BaseException:
            self.cancel.set()
            for t in threads:
                t.join()
            raise
        if self._error is not None:
            raise self._error
        if self.cancel.is_set():
            raise E3Error("image restore cancelled: the target is incomplete")

    # -- verification ----------------------------------------------------------------------------

    def _verify(self, plan: RestorePlan, target: Target) -> None:
        img = plan.image
        zero_ids = img.zero_ids()
        failures: list[str] = []

        def open_reader() -> ImageReader:
            if target.is_block_device:
                return RawReader(self.opts.target, img.device_size)
            return open_image_reader(self.opts.target)

        readers: list[ImageReader] = [open_reader() for _ in range(self.opts.workers)]

        def fail(i: int, off: int, want: bytes) -> None:
            with self._mu:
                failures.append(f"chunk {i} at offset {off}: content differs from blob {want.hex()}")

        def check(batch: list[ReadBack]) -> None:
            for r, digest in zip(batch, sha256_many([r.data for r in batch]), strict=True):
                if digest != r.want:
                    fail(r.index, r.offset, r.want)
            with self._mu:
                self.result.chunks_verified += len(batch)

        # data chunks are hashed in batches (``hash_batches``), as the restore does
        batches: HashBatches[ReadBack] = HashBatches(img.chunk_size + ALIGN, self.opts.workers, self.cancel, check)

        def make_job(reader: ImageReader) -> Callable[[Segment], None]:
            def job(seg: Segment) -> None:
                for i in range(seg.first, seg.end):
                    off, n = img.chunk_span(i)
                    want = img.content[i]
                    buffer = batches.take()
                    with batches.back_on_error(buffer):
                        reader.read_into(off, buffer[:n])
                    if want in zero_ids:  # must read all zero: no hash needed
                        if not is_zero(buffer[:n]):
                            fail(i, off, want)
                        batches.release([buffer])
                        with self._mu:
                            self.result.chunks_verified += 1
                        continue
                    ready = batches.add(ReadBack(i, off, want, buffer[:n], buffer))
                    if ready:
                        batches.check(ready)

            return job

        try:
            if readers and readers[0].virtual_size != img.device_size:
                raise IntegrityError(
                    f"verify: {self.opts.target} holds {readers[0].virtual_size} bytes, expected {img.device_size}"
                )
            self._run_workers(plan.segments, [make_job(rd) for rd in readers], finish=batches.finish)
        finally:
            for rd in readers:
                rd.close()
        if failures:
            failures.sort(key=lambda s: int(s.split()[1]))
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise IntegrityError(f"verify of {self.opts.target} failed: {'; '.join(failures[:5])}{more}")
        self.result.verified = True


def _close_all(workers: list[_Worker]) -> None:
    """Close every handle, then raise the first error (an fsync that failed) if any."""
    first: BaseException | None = None
    for w in workers:
        try:
            w.close()
        except BaseException as e:
            first = first or e
    if first is not None:
        raise first


def _runs(img: ImageSnapshot, chunks: list[int]) -> Iterator[tuple[int, int]]:
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


def run_image_restore(
    repo: Repository,
    snap_ref: str,
    opts: ImageRestoreOptions,
    progress: Progress | None = None,
    after_write: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    select: SnapshotFilter | None = None,
) -> ImageRestoreResult:
    """Restore (or export) image snapshot ``snap_ref`` to ``opts.target``; ``latest`` is the
    newest image snapshot that ``select`` (``--host``, ``--tag``, ``--path``) accepts.

    Into a new file, the lock's re-check for a competitor that locked at the same moment runs
    while the restore does: a restore only reads the repository and verifies every blob, so such
    a competitor (a prune) can only make it stop early, and then it stops as a failed restore does
    (the new file removed). A target that exists (a device, or a file with ``force``) is not
    touched before the re-check has passed: a refused restore must leave it as it was."""
    cancel = cancel or threading.Event()
    conflict: list[LockError] = []

    def stop(e: LockError) -> None:
        conflict.append(e)
        cancel.set()

    existing = os.path.exists(opts.target)
    with repo.lock(meanwhile=repo.load_index) if existing else repo.lock(on_conflict=stop):
        try:
            if not existing:
                repo.load_index()
            snap = repo.find_snapshot(snap_ref, filter=image_snapshots(select))
            img = load_image_snapshot(repo, snap)
            if conflict:
                raise conflict[0]
            return ImageRestorer(repo, opts, progress, after_write, cancel).run(img)
        except E3Error as e:
            if conflict and conflict[0] is not e:
                raise conflict[0] from e
            raise


__all__ = [
    "ImageRestoreOptions",
    "ImageRestoreResult",
    "ImageRestorer",
    "RestorePlan",
    "Segment",
    "plan_restore",
    "run_image_restore",
]
