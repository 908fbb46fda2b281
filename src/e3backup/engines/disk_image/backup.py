"""``run_image_backup``: one block device or image file into one snapshot.

    lock, index (+ packs a killed run left) -> snapshot provider (stale LVM snapshots removed)
    -> open the snapshot device -> layout + read plan (from that device, never the live fs)
    -> parent image + change map -> per-chunk decisions -> pipeline -> layout.json + tree
    -> flush packs and index -> snapshot (last: an interrupted run never leaves one)

Events go to ``on_event`` as they happen (the agent forwards them): ``DISK_IMAGE_STREAM_START``,
``REPOSITORY_SNAPSHOT_STARTED``, the sources' ``READ_PLAN_FALLBACK`` / ``READ_RECOVERED`` /
``CHANGE_MAP_IGNORED`` / ``SNAPSHOT_NONE``, ``DISK_IMAGE_STALLED`` before the tail,
``FINALIZING_SLOW`` / ``FINALIZING_STALLED`` in it, ``REPOSITORY_INDEX_WRITTEN``,
``REPOSITORY_SNAPSHOT_SAVED``, then ``DISK_IMAGE_STREAM_COMPLETED``, or ``DISK_IMAGE_FAILED``
(``RUN_CANCELLED`` and ``errors.Cancelled`` on cancel).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from ... import __version__
from ...contract import index_written, writing_lock
from ...errors import Cancelled, E3Error
from ...events import Event, EventCode
from ...platform.compat import READ_FLAGS, owner_ids
from ...platform.windows.vss import is_windows_source
from ...progress import Progress
from ...repo.blob import BlobType
from ...repo.lock import Lock
from ...repo.repository import Repository
from ...repo.snapshot import Snapshot
from ...repo.timefmt import format_ns, now_ns
from ...repo.writer import BlobWriter
from ...sources.changemap import decide_chunks, load_change_map, parent_mismatch
from ...sources.changetrack import Grid
from ...sources.device import Device, open_device
from ...sources.errors import ReadError, SourceError
from ...sources.layout.read import read_layout
from ...sources.plan import PlanMode, build_read_plan
from ...sources.reader import DeviceReader, ReadPolicy
from ...sources.snapshot.base import Snapshot as DeviceSnapshot
from ...sources.snapshot.base import SnapshotProvider
from ...sources.snapshot.lvm import LvmSnapshotProvider
from ...sources.snapshot.select import select_provider
from ...sources.stored_image import (
    ImageDocument,
    ImageSnapshot,
    find_image_snapshot,
    image_name,
    image_tags,
    load_image_snapshot,
    save_image_tree,
)
from ...sources.volume_hints import apply_volume_hints, check_layout
from ...tuning import tune_malloc
from .chunker import ChunkGrid, PlanCursor, ZeroBlobs
from .options import ImageBackupOptions, auto_chunk_size
from .pipeline import ImagePipeline
from .progress import EventSink, StallDetector
from .reader import ChunkReader
from .result import ImageBackupResult
from .saver import ChunkSaver
from .sizing import image_sizing
from .tracking import missed_event, missed_ranges, plan_tracking, report_rows, summary_event

MONITOR_INTERVAL = 1.0
DeviceOpener = Callable[[str], Device]


def run_image_backup(
    repo: Repository,
    opts: ImageBackupOptions,
    progress: Progress | None = None,
    on_event: Callable[[Event], None] | None = None,
    cancel: threading.Event | None = None,
    *,
    provider: SnapshotProvider | None = None,
    opener: DeviceOpener = open_device,
) -> ImageBackupResult:
    """Back up ``opts.source`` under a shared lock. ``cancel`` stops it within seconds.

    ``provider`` and ``opener`` are seams for tests (an lvm2 double, a fake device path).
    """
    sink = EventSink(on_event)
    cancel = cancel or threading.Event()
    tune_malloc()
    # a Windows volume or device (C:, \\.\PhysicalDrive0) is a name, not a path to make absolute
    source = opts.source if is_windows_source(opts.source) else os.path.abspath(opts.source)
    try:
        # before a provider is chosen: one error, no LVM warning (a double's devices exist only
        # behind its opener; a Windows device opens through the Win32 seam, not os.open)
        if provider is None and not is_windows_source(source):
            _check_source(source)
        # the lock's re-check runs while the backup does (~0.2 s of an incremental's ~0.6 s)
        with writing_lock(repo, cancel) as lock:
            repo.load_index()
            repo.adopt_unindexed_packs()
            started = time.time()  # before the snapshot: change tracking's reference time
            prov = provider or select_provider(
                source, opts.snapshot, run_id=opts.run_id, on_event=sink, vss=opts.vss, cancel=cancel
            )
            if isinstance(prov, LvmSnapshotProvider):
                prov.remove_stale()
            snap_cm: AbstractContextManager[DeviceSnapshot] = prov.snapshot(source)
            with snap_cm as snap:
                job = _ImageBackup(
                    repo,
                    opts,
                    source,
                    opts.strict_read_errors,
                    progress or Progress(mode="quiet"),
                    sink,
                    cancel,
                    started,
                    lock,
                )
                return job.run(snap, opener)
    except (Cancelled, KeyboardInterrupt) as e:
        sink.emit(EventCode.RUN_CANCELLED, f"image backup of {source} cancelled; no snapshot saved", source=source)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise Cancelled(f"image backup of {source} cancelled; no snapshot was saved") from None
    except BaseException as e:
        details: dict[str, object] = {"source": source, "error": str(e), "error_type": type(e).__name__}
        if isinstance(e, ReadError):
            details |= {"device": e.path, "offset": e.offset, "length": e.length}
        sink(Event(EventCode.DISK_IMAGE_FAILED, f"image backup of {source} failed: {e}", details=details))
        raise


def _check_source(source: str) -> None:
    """A source that does not exist or cannot be read fails at once, naming it."""
    try:
        os.close(os.open(source, READ_FLAGS))
    except OSError as e:
        raise SourceError(f"cannot open {source}: {e.strerror or e}") from e


class _ImageBackup:
    def __init__(
        self,
        repo: Repository,
        opts: ImageBackupOptions,
        source: str,
        strict: bool,
        progress: Progress,
        sink: EventSink,
        cancel: threading.Event,
        started: float,
        lock: Lock,
    ) -> None:
        self.repo = repo
        self.lock = lock
        self.started = started
        self.opts = opts
        self.source = source
        self.strict = strict
        self.progress = progress
        self.sink = sink
        self.cancel = cancel
        self.result = ImageBackupResult(source=source)

    def run(self, snap: DeviceSnapshot, opener: DeviceOpener) -> ImageBackupResult:
        start = time.monotonic()
        snap_time = self.opts.time_ns or now_ns()
        try:
            dev = opener(snap.device_path)
        except OSError as e:
            raise SourceError(f"cannot open {snap.device_path}: {e.strerror or e}") from e
        except ValueError as e:
            raise SourceError(f"cannot open {snap.device_path}: {e}") from e
        with dev:
            self.result.device = snap.device_path
            self.result.snapshot_provider = snap.provider
            self.result.consistency = snap.consistency
            self.result.warnings = list(snap.warnings)
            snapshot = self._backup(dev, snap_time, snap)
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        self.result.duration = time.monotonic() - start
        snapshot.summary = self._summary(snap_time)
        self.result.snapshot_id = self.repo.save_snapshot(snapshot)
        r = self.result
        self.sink.emit(
            EventCode.REPOSITORY_SNAPSHOT_SAVED,
            f"snapshot {r.snapshot_id[:8]} saved: image of {self.source}, {r.bytes_added} new bytes",
            snapshot_id=r.snapshot_id,
            parent_id=r.parent_id or None,
            bytes_added=r.bytes_added,
            recovered_bytes=r.recovered_bytes,
        )
        self.result.event_counts = dict(self.sink.counts)
        self.sink.emit(
            EventCode.DISK_IMAGE_STREAM_COMPLETED,
            f"image of {self.source} stored as snapshot {r.snapshot_id[:8]}: read {r.bytes_read} bytes, "
            f"added {r.bytes_added}",
            snapshot_id=r.snapshot_id,
            device_size=r.device_size,
            bytes_read=r.bytes_read,
            bytes_added=r.bytes_added,
            chunks_reused=r.chunks_reused,
            full=r.full,
            duration=round(r.duration, 3),
            partitions=r.partitions,  # the restore points list them without opening the repository
        )
        return r

    def _backup(self, dev: Device, snap_time: int, snap: DeviceSnapshot) -> Snapshot:
        opts, r = self.opts, self.result
        size = r.device_size = dev.size
        layout = read_layout(dev)
        check_layout(layout, dev, self.sink)
        r.partitions = [
            {
                "index": p.index,
                "name": p.name or (p.type_name if p.type_name != "unknown" else p.type),
                "filesystem": p.filesystem,
                "start": p.start,
                "size": p.size,
            }
            for p in layout.partitions
        ]
        mode = PlanMode.FULL if opts.read_plan == "full" else PlanMode.USED
        plan = apply_volume_hints(build_read_plan(dev, layout, mode, on_event=self.sink), snap, self.sink)
        r.plan_bytes = plan.planned_bytes
        host = opts.host or socket.gethostname()
        parent = self._parent(host)
        # a chain keeps its grid: the parent's chunk size unless one is asked for
        cs = r.chunk_size = opts.chunk_size or (parent.parent.chunk_size if parent else auto_chunk_size(size))
        grid = ChunkGrid(size, cs)
        r.chunks_total = grid.count
        file_map = load_change_map(opts.changed_extents, size) if opts.changed_extents else None
        mismatch = parent_mismatch(size, cs, layout, parent.parent) if parent else "no parent"
        tracking = plan_tracking(
            self.repo,
            dev,
            layout,
            parent,
            mismatch,
            opts.change_tracking and file_map is None,
            opts.verify_every,
            self.sink,
            self.started,
            Grid(cs, plan.extents),
        )
        change_map = file_map if file_map is not None else tracking.change_map
        r.tracking_bytes_read = tracking.bytes_read
        if change_map is not None and parent is not None:
            change_map |= parent.document.recovered  # stored as zeros after read errors: read again
        decisions = decide_chunks(
            cs, size, plan.extents, layout, change_map, parent.parent if parent else None, self.sink
        )
        r.full = mismatch is not None
        r.change_map_used = change_map is not None and decisions.ignored_reason is None
        r.change_tracking = report_rows(
            tracking, layout, plan.extents, decisions, file_map is not None, opts.verify_every
        )
        self.sink(summary_event(r.change_tracking))
        r.parent_id = parent.snapshot.id if parent else ""
        r.file_name = image_name(self.source)
        # more readers than chunks to read would only hold buffers: say so when that caps them
        to_read = decisions.read.total_bytes
        sizing = image_sizing(
            opts.memory.with_index(len(self.repo.index)),
            cs,
            max(1, min(opts.parallel, to_read)),
            opts.save_workers,
            opts.queue_depth,
            opts.upload_connections,
            self.repo.pack_size,
        )
        readers = sizing.readers
        capped = f" ({opts.parallel} asked, only {to_read} chunks to read)" if to_read < opts.parallel else ""
        if readers < min(opts.parallel, to_read):
            capped = f" ({opts.parallel} asked, {readers} within the memory budget of {opts.memory})"
        self.sink.emit(
            EventCode.DISK_IMAGE_STREAM_START,
            f"reading {dev.path} ({size} bytes, {plan.planned_bytes} planned) with {readers} readers{capped}",
            readers=readers,
            parallel_disk_reads=opts.parallel,
            read_plan=plan.mode.value,
            source=self.source,
            device=dev.path,
            device_size=size,
            plan_bytes=plan.planned_bytes,
            chunk_size=cs,
            parent_id=r.parent_id or None,
            full=r.full,
            change_map=r.change_map_used,
            strict_read_errors=self.strict,
            stall_seconds=opts.stall_seconds,
        )
        self.sink.emit(
            EventCode.REPOSITORY_SNAPSHOT_STARTED,
            f"backing up the image of {self.source}",
            paths=[self.source],
            parent_id=r.parent_id or None,
        )
        self.progress.set_total(size)
        self.progress.set_extra(device_size=size, plan_bytes=plan.planned_bytes, bytes_read=0)
        zero_blobs = ZeroBlobs(grid)
        reader = DeviceReader(dev, ReadPolicy(strict=self.strict), on_event=self.sink)
        writer = BlobWriter(
            self.repo,
            self.repo.pack_size,
            sizing.packs.connections,
            compression_level=opts.compression_level,
            spill=sizing.packs.spill,
        )
        saver = ChunkSaver(writer, zero_blobs)
        pipeline = ImagePipeline(
            grid,
            decisions,
            ChunkReader(reader, grid, PlanCursor(plan.extents), zero_blobs.zeros),
            saver,
            zero_blobs,
            parent.content if parent else None,
            lambda blob: self.repo.index.has(BlobType.DATA, blob),
            readers=readers,
            savers=sizing.savers,
            queue_depth=sizing.queue_depth,
            progress=self.progress,
            cancel=self.cancel,
            inspect=tracking.inspect_read if tracking.tracking is not None else None,
        )
        monitor_stop = threading.Event()
        monitor = threading.Thread(
            target=self._monitor, args=(size, pipeline, monitor_stop), name="image-monitor", daemon=True
        )
        monitor.start()
        ok = False
        try:
            saver.store_zero_blobs()
            content = pipeline.run()
            st = pipeline.stats
            r.chunks_read, r.chunks_reused, r.chunks_zero = st.chunks_read, st.chunks_reused, st.chunks_zero
            r.chunks_known, r.chunks_new, r.bytes_read = st.chunks_known, st.chunks_new, st.bytes_read
            recovered = reader.recovered
            r.recovered_bytes = recovered.total_bytes
            if tracking.verify and parent is not None:
                # chunks stored as zeros after read errors this time differ for another reason
                missed = missed_ranges(tracking, layout, plan.extents, parent, content)
                missed -= recovered.align(cs)
                if missed:
                    self.sink(missed_event(missed, layout))
            doc = ImageDocument(layout, r.file_name, size, cs, plan, recovered)
            tree_id = save_image_tree(self.repo, writer, doc, content, snap_time, tracking.stored())
            if self.cancel.is_set():
                raise Cancelled("cancelled")
            self.lock.confirm()  # before the index makes the packs count
            writer.flush()
            ok = True
        finally:
            monitor_stop.set()
            try:
                writer.close(success=ok, index_stored=ok or self.lock.settled() is None)
            finally:
                monitor.join()
        ws = writer.stats
        r.bytes_added, r.bytes_stored = ws.bytes_added, ws.bytes_stored
        index_written(self.sink, ws)
        return Snapshot(
            time=snap_time,
            tree=tree_id,
            paths=[self.source],
            hostname=host,
            username=_username(),
            uid=owner_ids()[0],
            gid=owner_ids()[1],
            tags=image_tags(self.source, r.full, opts.tags),
            parent=r.parent_id,
            program_version=f"e3backup {__version__}",
        )

    def _parent(self, host: str) -> ImageSnapshot | None:
        snap = find_image_snapshot(self.repo, self.opts.parent, host, self.source)
        if snap is None:
            return None
        try:
            return load_image_snapshot(self.repo, snap)
        except E3Error:
            if self.opts.parent:
                raise  # asked for by name: say why it cannot serve
            return None  # the latest one is unusable: this run is simply a full one

    def _monitor(self, total: int, pipeline: ImagePipeline, stop: threading.Event) -> None:
        """Stall detection: ``DISK_IMAGE_STALLED`` before the tail (and the run fails if the
        options say so), ``FINALIZING_SLOW`` / ``_STALLED`` in it."""
        detector = StallDetector(total, stall_after=self.opts.stall_seconds)
        interval = min(MONITOR_INTERVAL, self.opts.stall_seconds / 4)
        while not stop.wait(interval):
            done = self.progress.bytes_done
            event = detector.observe(done)
            if event is None:
                continue
            if event.code is EventCode.DISK_IMAGE_STALLED:
                event.details["fail_on_stall"] = self.opts.fail_on_stall
            self.sink(event)
            if event.code is EventCode.DISK_IMAGE_STALLED and self.opts.fail_on_stall:
                pipeline.fail(
                    SourceError(
                        f"reading {self.source} made no progress for {self.opts.stall_seconds:g}s "
                        f"(at byte {done} of {total}); the policy fails a stalled run"
                    )
                )

    def _summary(self, snap_time: int) -> dict[str, object]:
        r = self.result
        return {
            "backup_start": format_ns(snap_time),
            "backup_end": format_ns(now_ns()),
            "data_blobs": r.chunks_new,
            "data_added": r.bytes_added,
            "data_added_packed": r.bytes_stored,
            "total_files_processed": 2,
            "total_bytes_processed": r.device_size,
            "bytes_read": r.bytes_read,
            "chunks_reused": r.chunks_reused,
        }


def _username() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


__all__ = ["DeviceOpener", "run_image_backup"]
