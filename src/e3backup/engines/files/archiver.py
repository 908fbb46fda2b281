"""The files engine: walk directory trees and store them as a snapshot.

The parts, as restic's ``internal/archiver`` splits them:

    walker.py      the main thread walks the targets depth first and lists each directory once
    file_saver.py  ``read_workers`` threads read, chunk (FastCDC) and hash files; new chunks go
                   to ``save_workers`` threads (zstd + AES in ``BlobWriter.save``), a bounded
                   number in flight, which bounds memory
    tree_saver.py  directories are finished into tree blobs in post-order from a bounded queue
    scanner.py     totals for the percentage and ETA, in a thread of their own
    state.py       what they share: counters, the writer, the first failure, the cancel check

Walking, reading, compressing and uploading overlap, and memory does not grow with the tree.
A file whose size, mtime, ctime and inode match the parent snapshot is not read again. A set
``cancel`` event stops the walk and the file reads within a chunk: ``Cancelled``, no snapshot
saved. ``run_backup`` follows the run contract (``e3backup.contract``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from ... import __version__
from ...contract import Cancel, OnEvent, emit, index_written, writing_lock
from ...errors import E3Error
from ...events import EventCode, Level
from ...platform.compat import owner_ids
from ...progress import Progress
from ...repo.lock import Lock
from ...repo.repository import Repository, warn_unreadable_snapshot
from ...repo.snapshot import Snapshot
from ...repo.timefmt import format_ns, now_ns
from ...tuning import fewer_collections
from .file_saver import FileSaver
from .options import BackupOptions
from .result import BackupResult
from .scanner import scan
from .shadows import shadowed, shares_connected
from .sizing import backup_sizing
from .state import BackupState
from .targets import PathStyle, build
from .tree_saver import TreeSaver
from .walker import Walker


class SourceMissing(E3Error):
    """None of the paths to back up exists."""

    def __init__(self, missing: list[tuple[str, str]]) -> None:
        super().__init__("cannot back up " + ", ".join(f"{p} ({why})" for p, why in missing))
        self.missing = missing


def missing_sources(paths: list[str], to_fs: Callable[[str], str | bytes] = str) -> list[tuple[str, str]]:
    """``(path, reason)`` of each path that cannot be looked at (where ``to_fs`` says it is read)."""
    missing = []
    for p in paths:
        try:
            os.lstat(to_fs(p))
        except OSError as e:
            missing.append((p, e.strerror or str(e)))
    return missing


_SUMMARY_COUNTS = (
    "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed", "dirs_unmodified",
    "data_blobs", "tree_blobs",
)


class Archiver:
    def __init__(
        self,
        repo: Repository,
        opts: BackupOptions,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
        on_event: OnEvent | None = None,
        lock: Lock | None = None,
    ) -> None:
        """``lock``: the run's ``writing_lock``, confirmed before the index is written."""
        self.repo = repo
        self.lock = lock
        self.opts = opts
        self.progress = progress or Progress(mode="quiet")
        self.cancel = cancel or threading.Event()
        self.on_event = on_event
        self.state = BackupState(repo, opts, self.progress, on_event, self.cancel)

    @property
    def result(self) -> BackupResult:
        return self.state.result

    def run(self) -> BackupResult:
        paths = list(self.opts.paths)
        with ExitStack() as stack:
            if self.opts.share_login is not None:
                stack.enter_context(shares_connected(paths, self.opts.share_login, self.on_event))
            style = self.opts.path_style
            if self.opts.shadows is not None:
                style = stack.enter_context(shadowed(paths, self.opts.shadows, self.on_event,
                                                     self.result.warnings, self.cancel))
            return self._run(style)

    def _run(self, style: PathStyle) -> BackupResult:
        start = time.monotonic()
        state = self.state
        result = state.result
        snap_time = self.opts.time_ns or now_ns()
        paths = self._present_paths(style)
        targets = [os.fsencode(p) for p in paths]
        root = build(targets, style)
        abs_paths = [style.abspath(p) for p in paths]
        host = self.opts.host or socket.gethostname()
        parent = self._find_parent(host, abs_paths)
        if parent is not None:
            result.parent_id = parent.id
        if self.progress.mode != "quiet" or self.progress.callback is not None:
            # totals for the percentage and ETA; nobody would see them otherwise
            scanner = threading.Thread(target=scan, args=([style.to_fs(t) for t in targets], self.opts.excluder,
                                                          self.progress, style.to_user),
                                       name="scanner", daemon=True)
            scanner.start()
        o = self.opts
        size = backup_sizing(o.memory.with_index(len(self.repo.index)), o.read_workers, o.save_workers,
                             o.upload_connections, self.repo.pack_size)
        writer = state.writer = self.repo.writer(connections=size.packs.connections, spill=size.packs.spill)
        readers = ThreadPoolExecutor(size.read_workers, thread_name_prefix="reader")
        savers = ThreadPoolExecutor(size.save_workers, thread_name_prefix="saver")
        files = FileSaver(state, savers, size.inflight, size.window)
        trees = TreeSaver(state, files)
        ok = False
        try:
            walker = Walker(state, readers, files, trees, style.to_user)
            top = walker.walk_virtual(root, None, parent.tree if parent else None)
            trees.drain(everything=True)
            readers.shutdown(wait=True)
            savers.shutdown(wait=True)
            state.check()
            assert top.tree_id is not None
            if self.lock is not None:
                self.lock.confirm()  # before the index makes the packs count
            writer.flush()
            ok = True
        finally:
            readers.shutdown(wait=True, cancel_futures=True)
            savers.shutdown(wait=True, cancel_futures=True)
            writer.close(success=ok, index_stored=ok or self.lock is None or self.lock.settled() is None)
        st = writer.stats
        result.data_blobs = state.data_blobs
        result.tree_blobs = st.blobs_added - state.data_blobs
        result.bytes_added = st.bytes_added
        result.bytes_stored = st.bytes_stored
        index_written(self.on_event, st)
        snap = Snapshot(
            time=snap_time,
            tree=top.tree_id,
            paths=abs_paths,
            hostname=host,
            username=_username(),
            uid=owner_ids()[0],
            gid=owner_ids()[1],
            excludes=list(self.opts.excluder.patterns),
            tags=list(self.opts.tags),
            parent=parent.id if parent else "",
            program_version=f"e3backup {__version__}",
        )
        result.duration = time.monotonic() - start
        snap.summary = {
            "backup_start": format_ns(snap_time),
            "backup_end": format_ns(now_ns()),
            **{k: getattr(result, k) for k in _SUMMARY_COUNTS},
            "data_added": result.bytes_added,
            "data_added_packed": result.bytes_stored,
            "total_files_processed": result.total_files_processed,
            "total_bytes_processed": result.total_bytes_processed,
        }
        result.snapshot_id = self.repo.save_snapshot(snap)
        return result

    def _present_paths(self, style: PathStyle) -> list[str]:
        """The paths that exist. A missing one among several is skipped with a ``SOURCE_MISSING``
        warning and an error in the result (the run ends WARNING, as restic exits 3); when none
        exists, ``SourceMissing`` (an error event per path) and nothing is written."""
        to_fs = style.to_fs
        missing = missing_sources(list(self.opts.paths), lambda p: to_fs(os.fsencode(p)))
        gone = {p for p, _ in missing}
        present = [p for p in self.opts.paths if p not in gone]
        if not present:
            for p, why in missing:
                emit(self.on_event, EventCode.SOURCE_MISSING, f"cannot back up {p}: {why}", path=p)
            raise SourceMissing(missing)
        for p, why in missing:
            self.state.result.errors.append(f"{p}: {why}")
            emit(self.on_event, EventCode.SOURCE_MISSING, f"skipped {p}: {why}", level=Level.WARNING, path=p)
        return present

    def _find_parent(self, host: str, paths: list[str]) -> Snapshot | None:
        if self.opts.force_full:
            return None
        if self.opts.parent:
            return self.repo.find_snapshot(self.opts.parent)
        want = sorted(paths)
        snaps = self.repo.snapshots(on_error=warn_unreadable_snapshot)
        candidates = [s for s in snaps if s.hostname == host and sorted(s.paths) == want]
        return candidates[-1] if candidates else None


def _username() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def run_backup(
    repo: Repository,
    opts: BackupOptions,
    progress: Progress | None = None,
    on_event: OnEvent | None = None,
    cancel: Cancel | None = None,
) -> BackupResult:
    """Back up ``opts.paths`` into ``repo`` under a shared lock; returns the summary.

    Events: ``REPOSITORY_SNAPSHOT_STARTED``, ``REPOSITORY_INDEX_WRITTEN``,
    ``REPOSITORY_SNAPSHOT_SAVED``. Setting ``cancel`` stops the backup (``Cancelled``) without
    saving a snapshot.
    """
    paths = list(opts.paths)
    cancel = cancel or threading.Event()
    emit(on_event, EventCode.REPOSITORY_SNAPSHOT_STARTED, f"backing up {', '.join(paths)}", paths=paths)
    # the lock's re-check runs while the backup does: 0.2 s of every backup, a third of a small one's
    with writing_lock(repo, cancel) as lock, fewer_collections():
        repo.load_index()
        repo.adopt_unindexed_packs()
        result = Archiver(repo, opts, progress, cancel, on_event, lock).run()
    emit(
        on_event,
        EventCode.REPOSITORY_SNAPSHOT_SAVED,
        f"snapshot {result.snapshot_id[:8]} saved: {result.total_files_processed} files, "
        f"{result.bytes_added} new bytes",
        snapshot_id=result.snapshot_id, parent_id=result.parent_id or None, files_new=result.files_new,
        files_changed=result.files_changed, files_unmodified=result.files_unmodified,
        bytes_added=result.bytes_added, errors=len(result.errors),
    )
    return result


__all__ = ["Archiver", "SourceMissing", "missing_sources", "run_backup"]
