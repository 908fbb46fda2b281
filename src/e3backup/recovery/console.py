"""The recovery console's steps, shared by the local web UI and the scripted mode.

    sign_in(code)      the one-time code -> session; the restore point (host, time, disk, partitions)
    disks()            the machine's disks, each with whether it fits (and why not) or what it holds
    start(path, name)  the target confirmed by typing its name; the restore runs in a thread
    status()           phase, progress, speed, ETA, the events so far
    cancel()           stop the restore (the dashboard's cancel arrives through the session too)

While signed in, the session keeper (``keeper.py``) refreshes the session every 5 minutes, polls
for cancel and delivers the outbox. Events and the final status go through the agent's ``Outbox``
(in a RAM directory), so a network drop loses nothing: they are delivered, in order, when the
server answers again. When the repository itself becomes unreachable, the restore stops, waits, opens the
repository again and resumes: segments already written are skipped (``WrittenSegments``).
Time goes through a ``Timer`` so tests can run hours of it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ..agent.outbox import Outbox
from ..agent.reporter import RunReporter
from ..api.agent import RunAssignment
from ..api.common import RunStatus
from ..errors import Cancelled, E3Error, StoreUnavailableError, UsageError
from ..events import EventCode
from ..progress import Progress
from ..repo.repository import Repository
from ..restore.image import (
    DEFAULT_SEGMENT_MB,
    DEFAULT_WORKERS,
    ImageRestoreOptions,
    MiB,
    WrittenSegments,
    run_image_restore,
)
from ..restore.target import REQUEST_NAMES
from ..sources.layout.model import DiskLayout
from ..sources.stored_image import is_image_snapshot, load_image_snapshot
from ..store.retry import RetryPolicy
from .access import DestinationAccess, RepositoryAccess, RestorePoint, restore_point
from .client import RecoveryClient
from .disks import DiskInfo, disk_info, list_disks
from .fit import Fit, check_fit, used_end
from .gpt import relocate_backup_gpt, zero_tail
from .keeper import RealTimer, SessionKeeper, Timer

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 300.0  # the seeds' console refreshes its session every 5 minutes
POLL_INTERVAL = 5.0
RETRY_WAITS = (5.0, 10.0, 30.0, 60.0)
OUTAGE_LIMIT = 6 * 3600.0
DONE_MESSAGE = "Restore complete: remove the rescue media and reboot."


class Phase(StrEnum):
    SIGNED_OUT = "signed_out"
    READY = "ready"
    RESTORING = "restoring"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class _Reporter(RunReporter):
    """The run's reporter, also keeping each event for the console's own screen."""

    def __init__(self, *args: Any, sink: Callable[[str, str, str | None], None], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._sink = sink

    def event(self, code: EventCode | str, message: str, level: str | None = None, **details: Any) -> None:
        super().event(code, message, level, **details)
        self._sink(str(code), message, level)


@dataclass
class ConsoleSettings:
    workers: int | None = None
    """Overrides the job policy's ``restore_parallel_workers`` (default: the policy, else 8)."""
    segment_size_mb: int | None = None
    """Overrides the job policy's ``restore_segment_size_mb`` (default: the policy, else 32)."""
    refresh_interval: float = REFRESH_INTERVAL
    poll_interval: float = POLL_INTERVAL
    progress_interval: float = 1.0
    retry_waits: tuple[float, ...] = RETRY_WAITS
    outage_limit: float = OUTAGE_LIMIT
    """Give up when the repository has been unreachable this long (seconds)."""
    store_retry: RetryPolicy | None = None
    """The S3 store's own retries of each request, before the console's resume takes over."""
    outbox_dir: str | None = None


@dataclass
class Hooks:
    """Seams for tests: told of each segment written; called between writing and verifying."""

    on_segment: Callable[[int], None] | None = None
    after_write: Callable[[], None] | None = None


@dataclass(frozen=True)
class ImageInfo:
    """The restore point as the technician sees it before choosing a disk."""

    point: RestorePoint
    time: datetime
    device_size: int
    chunk_size: int
    chunk_count: int
    layout: DiskLayout
    used_end: int
    source: str


@dataclass
class Status:
    phase: Phase = Phase.SIGNED_OUT
    message: str = ""
    target: str = ""
    percent: float = 0.0
    bytes_done: int = 0
    bytes_total: int = 0
    speed: float = 0.0
    eta: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    segments_total: int = 0
    segments_written: int = 0
    pending_delivery: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "message": self.message,
            "target": self.target,
            "percent": round(self.percent, 1),
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "speed": self.speed,
            "eta": self.eta,
            "events": self.events[-50:],
            "segments_total": self.segments_total,
            "segments_written": self.segments_written,
            "pending_delivery": self.pending_delivery,
        }


def _ram_dir() -> str | None:
    """Where the outbox lives: RAM (``/dev/shm``) when writable, never the disk being restored."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


class RecoveryConsole:
    def __init__(
        self,
        client: RecoveryClient,
        settings: ConsoleSettings | None = None,
        timer: Timer | None = None,
        hooks: Hooks | None = None,
        access_factory: Callable[..., RepositoryAccess] = DestinationAccess,
    ) -> None:
        self.client = client
        self.settings = settings or ConsoleSettings()
        self.timer = timer or RealTimer()
        self.hooks = hooks or Hooks()
        self._access_factory = access_factory
        self._status = Status()
        self._mu = threading.Lock()
        self.keeper: SessionKeeper | None = None
        self._worker: threading.Thread | None = None
        self._own_outbox = self.settings.outbox_dir is None
        # named after the process: a leftover can be traced to the console that left it
        prefix = f"e3backup-recovery-{os.getpid()}-"
        self._outbox_dir = self.settings.outbox_dir or tempfile.mkdtemp(prefix=prefix, dir=_ram_dir())
        self.outbox = Outbox(self._outbox_dir)
        self.reporter: RunReporter | None = None
        self.image: ImageInfo | None = None
        self.access: RepositoryAccess | None = None
        self._repo: Repository | None = None
        self._signed_in_until: datetime | None = None
        self._final_queued = False
        self._local_events: list[dict[str, Any]] = []

    # -- signing in ------------------------------------------------------------------------------

    def sign_in(self, code: str) -> ImageInfo:
        """Redeem the code, fetch the restore point and the repository access, open the repository
        and load the snapshot (it must be an image snapshot of the session's host)."""
        if self.image is not None:
            raise UsageError("already signed in")
        redeemed = self.client.redeem(code.strip())
        self._signed_in_until = datetime.fromisoformat(redeemed.session_expires_at)
        assignment = self.client.get_run().run
        point = restore_point(assignment)
        self.reporter = _Reporter(
            point.run_id, self.client, self.outbox, self.settings.progress_interval, sink=self._local_event
        )
        s = self.settings
        self.keeper = SessionKeeper(
            self.client, self.outbox, self.reporter, self.timer, s.refresh_interval, s.poll_interval
        )
        self.keeper.start()
        try:
            self.image = self._load(assignment, point)
        except Exception as e:
            self._sign_in_failed(str(e) or type(e).__name__)
            raise
        with self._mu:
            self._status.phase = Phase.READY
            self._status.bytes_total = self.image.device_size
        return self.image

    def _load(self, assignment: RunAssignment, point: RestorePoint) -> ImageInfo:
        assert self.reporter is not None
        options = {"retry": self.settings.store_retry} if self.settings.store_retry is not None else {}
        self.access = self._access_factory(assignment.destination, **options)
        repo = self.access.open()
        self._repo = repo
        self.reporter.event(
            EventCode.REPOSITORY_OPENED, f"repository {self.access.where} opened by the recovery console"
        )
        snap = repo.find_snapshot(point.snapshot_id)
        if not is_image_snapshot(snap):
            raise UsageError(f"snapshot {snap.short_id} is not a disk image snapshot")
        if snap.hostname != point.hostname:
            raise UsageError(
                f"snapshot {snap.short_id} belongs to host {snap.hostname!r}; this recovery session is for "
                f"{point.hostname!r}: nothing restored"
            )
        repo.load_index()
        img = load_image_snapshot(repo, snap)
        self._plan = img.plan
        return ImageInfo(
            point=point,
            time=datetime.fromtimestamp(snap.time / 1e9, UTC),
            device_size=img.device_size,
            chunk_size=img.chunk_size,
            chunk_count=img.chunk_count,
            layout=img.layout,
            used_end=used_end(img.layout, img.device_size, img.plan),
            source=img.file_name,
        )

    def _sign_in_failed(self, why: str) -> None:
        """The session's restore point cannot be used: the run fails with the reason, the session
        ends with it, and the console can be signed in again with a new code."""
        assert self.reporter is not None and self.keeper is not None
        self.reporter.event(EventCode.RECOVERY_FAILED, why)
        self.reporter.finish(RunStatus.FAILED, error=why)
        self.keeper.final()
        self.keeper.delivered.wait(10)
        self.keeper.stop()
        self._drop_repo()
        self.reporter = None
        self.keeper = None

    # -- choosing the target ---------------------------------------------------------------------

    def fit(self, disk: DiskInfo) -> Fit:
        img = self._image()
        return check_fit(img.layout, img.device_size, img.chunk_size, self._plan, disk)

    def disks(self) -> list[tuple[DiskInfo, Fit]]:
        self._image()
        return [(d, self.fit(d)) for d in list_disks()]

    def _image(self) -> ImageInfo:
        if self.image is None:
            raise UsageError("sign in with the recovery code first")
        return self.image

    # -- restoring -------------------------------------------------------------------------------

    def start(self, path: str, confirm: str) -> Fit:
        """Start restoring to ``path`` once ``confirm`` is the disk's name (or path)."""
        img = self._image()
        if self._worker is not None:
            raise UsageError("a restore has already been started")
        disk = disk_info(path)
        fit = self.fit(disk)
        if not fit.ok:
            raise UsageError(fit.reason)
        if confirm.strip() not in (disk.name, disk.path):
            raise UsageError(f"type the disk's name ({disk.name}) to confirm that {disk.path} may be overwritten")
        per_segment = max(1, self._segment_size() // img.chunk_size)
        with self._mu:
            self._status.phase, self._status.target = Phase.RESTORING, disk.path
            self._status.segments_total = -(-img.chunk_count // per_segment)
            self._status.message = f"Restoring to {disk.path}"
        self._worker = threading.Thread(target=self._restore, args=(disk, fit), name="recovery-restore", daemon=True)
        assert self.keeper is not None
        self.keeper.restoring = True
        self._worker.start()
        return fit

    def cancel(self) -> None:
        if self.reporter is not None:
            self.reporter.request_cancel("cancelled at the recovery console")

    def wait(self, timeout: float | None = None) -> Phase:
        if self._worker is not None:
            self._worker.join(timeout)
        return self.status().phase

    def _workers(self) -> int:
        point = self._image().point
        return self.settings.workers or point.workers or DEFAULT_WORKERS

    def _segment_size(self) -> int:
        point = self._image().point
        return (self.settings.segment_size_mb or point.segment_size_mb or DEFAULT_SEGMENT_MB) * MiB

    def _restore(self, disk: DiskInfo, fit: Fit) -> None:
        img, rep = self._image(), self.reporter
        assert rep is not None and self.access is not None
        point = img.point
        rep.event(
            EventCode.RECOVERY_STARTED,
            f"restoring snapshot {point.snapshot_id[:8]} of {point.hostname} to {disk.path} "
            f"({disk.model}, {disk.size} bytes)",
            target=disk.path,
            model=disk.model,
            target_size=disk.size,
            image_size=img.device_size,
            workers=self._workers(),
            segment_size=self._segment_size(),
        )
        written = WrittenSegments(self._segment_written)
        options = ImageRestoreOptions(
            target=disk.path,
            snapshot=point.snapshot_id,
            workers=self._workers(),
            segment_size=self._segment_size(),
            verify=True,
            size_limit=fit.size_limit,
            setting_names=REQUEST_NAMES,
        )
        try:
            result = self._restore_resuming(options, written)
            if fit.size_limit is not None:
                zero_tail(disk.path, fit.size_limit)
            if fit.move_gpt:
                old, new = relocate_backup_gpt(disk.path, img.layout.sector_size)
                bigger = "larger" if disk.size > img.device_size else "smaller"
                rep.event(
                    EventCode.RECOVERY_GPT_MOVED,
                    f"backup GPT moved from sector {old} to the last sector {new} ({disk.path} is {bigger} "
                    "than the source disk)",
                    old_lba=old,
                    new_lba=new,
                )
            rep.event(
                EventCode.RECOVERY_COMPLETED,
                f"{disk.path} restored and verified: {result.chunks_verified} chunks checked, "
                f"{result.bytes_written} bytes written",
                chunks_verified=result.chunks_verified,
                bytes_written=result.bytes_written,
            )
            self._finish(RunStatus.SUCCESS, Phase.DONE, DONE_MESSAGE)
        except Cancelled as e:
            self._finish(RunStatus.CANCELLED, Phase.CANCELLED, f"{e} ({rep.cancel_reason or 'cancelled'})", str(e))
        except Exception as e:  # the run must end with a status whatever went wrong
            log.debug("recovery restore failed", exc_info=True)
            message = str(e) or type(e).__name__
            rep.event(EventCode.RECOVERY_FAILED, message)
            self._finish(RunStatus.FAILED, Phase.FAILED, f"Restore failed: {message}", message)

    def _restore_resuming(self, options: ImageRestoreOptions, written: WrittenSegments) -> Any:
        """The restore, run again after each repository outage until it completes (or the outage
        outlasts ``outage_limit``); segments already written are not restored again."""
        rep, s = self.reporter, self.settings
        assert rep is not None and self.access is not None
        outage_since: float | None = None
        failures = 0
        while True:
            try:
                if self._repo is None:
                    self._repo = self.access.open()
                    rep.event(
                        EventCode.RECOVERY_RESUMED,
                        f"the repository answers again: resuming with {len(written)} of "
                        f"{self._status.segments_total} segments already written",
                        segments_written=len(written),
                        segments_total=self._status.segments_total,
                    )
                with Progress(mode="quiet", interval=s.progress_interval, callback=self._progress) as progress:
                    return run_image_restore(
                        self._repo,
                        options,
                        progress,
                        rep.on_engine_event,
                        rep.cancel,
                        after_write=self.hooks.after_write,
                        written=written,
                    )
            except StoreUnavailableError as e:
                self._drop_repo()
                now = self.timer.now()
                outage_since = now if outage_since is None else outage_since
                if now - outage_since > s.outage_limit:
                    raise E3Error(f"the repository stayed unreachable for over {s.outage_limit:.0f} s: {e}") from e
                pause = s.retry_waits[min(failures, len(s.retry_waits) - 1)]
                failures += 1
                rep.event(
                    EventCode.RECOVERY_REPOSITORY_UNREACHABLE,
                    f"the repository is unreachable ({e}); {len(written)} of {self._status.segments_total} "
                    f"segments are written; trying again in {pause:.0f} s",
                    segments_written=len(written),
                    segments_total=self._status.segments_total,
                )
                with self._mu:
                    self._status.message = "The repository is unreachable: retrying"
                if self.timer.wait(rep.cancel, pause):
                    raise Cancelled("image restore cancelled while the repository was unreachable") from None

    def _drop_repo(self) -> None:
        repo, self._repo = self._repo, None
        if repo is not None:
            with contextlib.suppress(Exception):
                repo.close()

    def _segment_written(self, first: int) -> None:
        with self._mu:
            self._status.segments_written += 1
        if self.hooks.on_segment is not None:
            self.hooks.on_segment(first)

    def _progress(self, snap: dict[str, Any]) -> None:
        with self._mu:
            st = self._status
            st.percent = float(snap.get("percent_done", 0.0)) * 100
            st.bytes_done = int(snap.get("bytes_done", 0))
            st.bytes_total = int(snap.get("total_bytes", 0)) or st.bytes_total
            st.speed = float(snap.get("bytes_per_second", 0))
            st.eta = snap.get("seconds_remaining")
        assert self.reporter is not None
        self.reporter.progress(snap)

    def _finish(self, status: RunStatus, phase: Phase, message: str, error: str | None = None) -> None:
        assert self.reporter is not None
        self._drop_repo()
        extra = {"progress_pct": 100.0} if status is RunStatus.SUCCESS else {}
        self.reporter.finish(status, error=error, extra=extra)
        self._final_queued = True
        with self._mu:
            self._status.phase, self._status.message = phase, message
        assert self.keeper is not None
        self.keeper.final()

    def wait_delivered(self, timeout: float | None = None) -> bool:
        """Wait until every event and the final status reached the server."""
        return self.keeper is not None and self.keeper.delivered.wait(timeout)

    @property
    def refreshes(self) -> int:
        return self.keeper.refreshes if self.keeper is not None else 0

    @property
    def session_expires_at(self) -> datetime | None:
        if self.keeper is not None and self.keeper.session_expires_at is not None:
            return self.keeper.session_expires_at
        return self._signed_in_until

    def _local_event(self, code: str, message: str, level: str | None) -> None:
        ts = datetime.now(UTC).strftime("%H:%M:%S")
        with self._mu:
            self._local_events.append({"time": ts, "code": code, "message": message, "level": level or "info"})

    def status(self) -> Status:
        with self._mu:
            st = Status(**{k: getattr(self._status, k) for k in Status.__dataclass_fields__})
            st.events = [dict(e) for e in self._local_events]
        st.pending_delivery = self.outbox.pending_count()
        return st

    def close(self, reason: str = "") -> None:
        """End the console. Signed in but never started (a refused disk, the technician left): the
        run is reported cancelled, with ``reason``, so the dashboard shows no run waiting forever."""
        if self.reporter is not None and self._worker is None and not self._final_queued:
            why = reason or "the recovery console was closed before a restore started"
            self.reporter.finish(RunStatus.CANCELLED, error=why)
            self._final_queued = True
            if self.keeper is not None:
                self.keeper.final()
            self.wait_delivered(10)
        if self.keeper is not None:
            self.keeper.stop()
        self._drop_repo()
        if self._own_outbox:
            shutil.rmtree(self._outbox_dir, ignore_errors=True)


__all__ = [
    "DONE_MESSAGE",
    "ConsoleSettings",
    "Hooks",
    "ImageInfo",
    "Phase",
    "RealTimer",
    "RecoveryConsole",
    "Status",
    "Timer",
]
