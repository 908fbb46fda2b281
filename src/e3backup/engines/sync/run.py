"""``run_sync``: scan, list, judge, plan, guard, transfer, delete; in that order.

Nothing is deleted before every upload is done (a failed or cancelled run leaves the old
copies), and nothing at all when the guard refuses. Transfers run on ``transfers`` threads that
share one bandwidth budget; the first destination error stops them all (the next files would
fail the same way), while a file that cannot be read is skipped and named. Cancelling stops
between files and between parts of a large file: within seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ...errors import Cancelled, E3Error, StoreError, UsageError
from ...events import Event, EventCode
from ...progress import Progress
from ...store.limiter import TokenBucket
from .local_target import LocalDestination
from .options import Compare, LocalTarget, SyncOptions
from .plan import Plan, make_plan
from .result import SyncResult
from .source import Scan, SourceFile, scan
from .state import SyncState
from .target import DestFile, Destination, FileError, file_md5

log = logging.getLogger(__name__)

MAX_FILE_EVENTS = 20  # one event per failed file up to this many, then one with the count

EventSink = Callable[[Event], None]


class SourceMissing(E3Error):
    """No source folder exists: nothing to mirror, and nothing deleted."""


class SyncFailed(E3Error):
    """The destination failed (the store's error, retried already); nothing was deleted."""


def open_destination(options: SyncOptions) -> Destination:
    t = options.target
    if isinstance(t, LocalTarget):
        _refuse_overlap(options.sources, t.path)
        return LocalDestination(t.path)
    from .s3_target import S3Destination  # boto3 is imported for buckets only

    state = SyncState.for_target(options.state_dir, t.url)  # read on a dry run too, saved only after a real one
    return S3Destination(t, state, options.transfers, retry=options.retry)


def _refuse_overlap(sources: tuple[str, ...], dest: str) -> None:
    d = os.path.realpath(dest)
    for s in sources:
        r = os.path.realpath(s)
        if d == r or d.startswith(r.rstrip(os.sep) + os.sep) or r.startswith(d.rstrip(os.sep) + os.sep):
            raise UsageError(f"sync: the destination {dest} and the source {s} overlap")


class _Run:
    def __init__(self, options: SyncOptions, dest: Destination, progress: Progress, on_event: EventSink,
                 cancel: threading.Event) -> None:
        self.o = options
        self.dest = dest
        self.progress = progress
        self.on_event = on_event
        self.cancel = cancel
        self.result = SyncResult(destination=dest.url, dry_run=options.dry_run)
        self.stop = threading.Event()  # cancel, or a destination error in one transfer
        self._lock = threading.Lock()
        self._bucket = (TokenBucket(options.limit_upload * 1024, sleep=self._wait)
                        if options.limit_upload else None)
        threading.Thread(target=self._watch, name="sync-cancel", daemon=True).start()

    def _watch(self) -> None:
        """Turn the caller's cancel into ``stop``, which every transfer and wait looks at."""
        while not self.stop.wait(0.1):
            if self.cancel.is_set():
                self.stop.set()

    def _wait(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _check(self) -> None:
        if self.cancel.is_set():
            self.stop.set()
            raise Cancelled(f"sync cancelled: {self.result.files_transferred} files transferred, "
                            "nothing deleted")

    def file_failed(self, path: str, reason: str) -> None:
        with self._lock:
            self.result.errors.append(f"{path}: {reason}")
            n = len(self.result.errors)
        if n <= MAX_FILE_EVENTS:
            self.on_event(Event(EventCode.SYNC_FILE_FAILED, f"{path}: {reason}", details={"path": path,
                                                                                          "reason": reason}))

    # -- judging ------------------------------------------------------------------------------

    def judge(self, key: str, src: SourceFile, d: DestFile) -> bool:
        """True when ``key`` must be uploaded again."""
        if src.size != d.size:
            return True
        if self.o.compare is Compare.CHECKSUM:
            remote = self.dest.md5(key, d)
            changed = remote is None or remote != file_md5(src.path, src.size, self.cancel)
        else:
            changed = self.dest.mtime_ns(key, d) != src.mtime_ns
        if not changed:
            self.dest.remember(key, src, d)
        return changed

    def quick_judge(self, key: str, src: SourceFile, d: DestFile) -> bool | None:
        """``judge`` when no request or read is needed (most files of a nightly run), else None."""
        if src.size != d.size:
            return True
        if self.o.compare is Compare.CHECKSUM:
            return None
        known = self.dest.known_mtime(key, d)
        return None if known is None else known != src.mtime_ns

    def changed_keys(self, sc: Scan, listing: dict[str, DestFile], pool: ThreadPoolExecutor) -> set[str]:
        changed: set[str] = set()
        both = []
        for key, src in sc.files.items():
            d = listing.get(key)
            if d is None:
                continue
            quick = self.quick_judge(key, src, d)
            if quick is None:
                both.append(key)  # to be judged on the pool: a HEAD, or a checksum
            elif quick:
                changed.add(key)

        def one(key: str) -> str | None:
            if self.stop.is_set():
                return None
            try:
                return key if self.judge(key, sc.files[key], listing[key]) else None
            except FileError as e:
                self.file_failed(e.path, e.reason)
                return None

        changed.update(k for k in pool.map(one, both) if k is not None)
        self._check()
        return changed

    # -- transfers ------------------------------------------------------------------------------

    def pace(self, n: int) -> None:
        if self._bucket is not None:
            self._bucket.take(n)
        if self.stop.is_set():
            raise Cancelled("sync stopped")
        self.progress.add(nbytes=n)
        with self._lock:
            self.result.bytes_transferred += n

    def transfer(self, sc: Scan, plan: Plan, pool: ThreadPoolExecutor) -> None:
        failure: list[BaseException] = []

        def one(key: str) -> None:
            if self.stop.is_set():
                return
            src = sc.files[key]
            self.progress.add(current=src.path)
            try:
                self.dest.upload(key, src, self.pace, self.stop)
            except FileError as e:
                self.file_failed(e.path, e.reason)
                return
            except Cancelled:
                return
            except BaseException as e:
                failure.append(e)
                self.stop.set()
                return
            self.progress.add(files=1)
            with self._lock:
                self.result.files_transferred += 1

        list(pool.map(one, plan.upload))
        if failure:
            raise failure[0]
        self._check()

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> SyncResult:
        r = self.result
        sc = scan(self.o.sources, self.o.excluder)
        r.source_files, r.source_bytes, r.files_skipped = len(sc.files), sc.bytes, sc.skipped
        for root in sc.missing:
            self.on_event(Event(EventCode.SYNC_SOURCE_MISSING,
                                f"source folder {root} does not exist; nothing deleted under its part of "
                                f"{self.dest.url}", details={"path": root}))
        if len(sc.missing) == len(sc.roots):
            raise SourceMissing(f"no source folder exists ({', '.join(sc.missing)}); nothing was synced "
                                "or deleted")
        for path, reason in sc.errors:
            self.file_failed(path, reason)
        r.errors.extend(f"{root}: source folder does not exist" for root in sc.missing)
        self._check()
        listing = self.dest.listing()
        with ThreadPoolExecutor(self.o.transfers, thread_name_prefix="sync") as pool:
            try:
                plan = self.plan(sc, listing, pool)
                if not self.o.dry_run:
                    self.transfer(sc, plan, pool)
            except BaseException:
                self.stop.set()  # the pool's queued files are skipped, not run, on the way out
                raise
        if self.o.dry_run:
            r.files_deleted = len(plan.delete)
        elif plan.delete:
            failed = self.dest.delete(plan.delete)
            for key, reason in failed:
                self.file_failed(f"{self.dest.url}/{key}", f"could not delete: {reason}")
            r.files_deleted = len(plan.delete) - len(failed)
        return r

    def plan(self, sc: Scan, listing: dict[str, DestFile], pool: ThreadPoolExecutor) -> Plan:
        r = self.result
        changed = self.changed_keys(sc, listing, pool)
        plan = make_plan(sc, listing, changed, excluder=self.o.excluder, delete=self.o.delete,
                         max_delete_percent=self.o.max_delete_percent)
        r.files_new, r.files_changed, r.files_unchanged = len(plan.new), len(plan.changed), plan.unchanged
        r.files_kept, r.deletes_refused = plan.kept, plan.refused
        upload_bytes = sum(sc.files[k].size for k in plan.upload)
        self.progress.set_total(upload_bytes, len(plan.upload))
        self.progress.set_extra(files_unchanged=plan.unchanged, files_to_delete=len(plan.delete))
        if plan.refused:
            pct = plan.refused * 100 // max(plan.dest_files, 1)
            self.on_event(Event(
                EventCode.SYNC_DELETE_REFUSED,
                f"refused to delete {plan.refused} of the {plan.dest_files} files in {self.dest.url} "
                f"({pct} %, more than the max_delete limit of {self.o.max_delete_percent} %); nothing "
                "was deleted", details={"would_delete": plan.refused, "destination_files": plan.dest_files,
                                        "max_delete_percent": self.o.max_delete_percent}))
        dry = self.o.dry_run
        self.on_event(Event(
            EventCode.SYNC_STARTED,
            f"{'dry run: would copy' if dry else 'copying'} {len(plan.new)} new and {len(plan.changed)} "
            f"changed files ({upload_bytes} bytes) to {self.dest.url}, "
            f"{'would delete' if dry else 'deleting'} {len(plan.delete)}; {plan.unchanged} unchanged",
            details={"new": len(plan.new), "changed": len(plan.changed), "unchanged": plan.unchanged,
                     "delete": len(plan.delete), "bytes": upload_bytes, "dry_run": dry}))
        return plan


def run_sync(options: SyncOptions, progress: Progress, on_event: EventSink,
             cancel: threading.Event | None = None) -> SyncResult:
    """Mirror ``options.sources`` to ``options.target``; raises ``Cancelled`` when cancelled."""
    start = time.monotonic()
    dest = open_destination(options)
    run = _Run(options, dest, progress, on_event, cancel or threading.Event())
    try:
        result = run.run()
    except StoreError as e:
        on_event(Event(EventCode.SYNC_FAILED, f"{dest.url}: {e}; {run.result.files_transferred} files "
                       "transferred, nothing deleted", details={"error_type": type(e).__name__}))
        raise SyncFailed(str(e)) from e
    finally:
        run.stop.set()
        state: SyncState | None = getattr(dest, "state", None)
        if state is not None and not options.dry_run:
            try:
                state.save()
            except OSError as e:
                log.warning("sync state not saved (%s); the next run judges files by their metadata", e)
        dest.close()
    result.duration = time.monotonic() - start
    n = len(result.errors)
    if n > MAX_FILE_EVENTS:
        on_event(Event(EventCode.SYNC_FILES_FAILED, f"{n} files could not be synced ({MAX_FILE_EVENTS} listed "
                       "one by one); see the run's summary", details={"count": n}))
    on_event(Event(
        EventCode.SYNC_COMPLETED,
        f"{'dry run: ' if result.dry_run else ''}{result.files_transferred} transferred "
        f"({result.bytes_transferred} bytes), {result.files_deleted} deleted, {result.files_unchanged} "
        f"unchanged, {n} errors", details=result.summary_json()))
    return result


__all__ = ["MAX_FILE_EVENTS", "SourceMissing", "SyncFailed", "open_destination", "run_sync"]
