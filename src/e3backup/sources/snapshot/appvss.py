"""Application-consistent VSS snapshots: the requester's sequence over the ``BackupComponents`` seam.

Microsoft's "Overview of Processing a Backup Under VSS" is the order followed here:
``InitializeForBackup``, ``SetContext(VSS_CTX_BACKUP)``, ``SetBackupState`` (components selected,
no bootable system state, ``VSS_BT_COPY`` or ``VSS_BT_FULL`` per policy), ``DisableWriterClasses``
for the writers the policy leaves out (before ``GatherWriterMetadata``, as its page requires; names
are resolved to class ids with a separate object, as it also says), ``GatherWriterMetadata``,
``AddComponent`` for each writer's top-level components with files on the set's volumes,
``StartSnapshotSet``, ``AddToSnapshotSet`` per volume, ``PrepareForBackup``, ``GatherWriterStatus``,
``DoSnapshotSet``, ``GatherWriterStatus``, ``GetSnapshotProperties`` for each device; when the
caller is done ``SetBackupSucceeded`` per component and ``BackupComplete``, or ``AbortBackup`` when it
failed; then ``DeleteSnapshots`` of the set and the object's release, on every path.

A writer in a ``VSS_WS_FAILED_AT_*`` state is named with its state and failure: a warning
(``VSS_WRITER_FAILED``, the snapshot is used, that writer's data is only crash-consistent and its
components are reported not backed up) or, with policy ``vss_writer_failure: fail``, the end of the
snapshot. ``VSS_E_SNAPSHOT_SET_IN_PROGRESS`` (another backup's set) is retried after a pause; every
asynchronous step has a deadline after which it is cancelled. Platform-independent: Linux tests
drive it through a double of the seam.
"""

from __future__ import annotations

import ntpath
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

from e3backup.errors import Cancelled
from e3backup.events import Event, EventCode, Level
from e3backup.platform.windows.vss import ShadowCopyError, volume_root
from e3backup.platform.windows.vssapi import (
    VSS_BT_COPY,
    VSS_BT_FULL,
    VSS_CTX_BACKUP,
    VSS_E_SNAPSHOT_SET_IN_PROGRESS,
    VSS_S_ASYNC_CANCELLED,
    VSS_S_ASYNC_FINISHED,
    VSS_S_ASYNC_PENDING,
    BackupComponents,
    Component,
    VssAsync,
    VssComError,
    WriterMetadata,
    WriterStatus,
    describe,
)
from e3backup.platform.windows.win32 import Win32
from e3backup.sources.errors import SnapshotError
from e3backup.sources.snapshot.base import Snapshot
from e3backup.sources.snapshot.vss import VssSnapshotProvider, ntfs_hints

CONSISTENCY = ("application", "crash")
BACKUP_TYPES = {"copy": VSS_BT_COPY, "full": VSS_BT_FULL}
WRITER_FAILURE = ("warn", "fail")
_GUID = re.compile(r"^\{?([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})\}?$")
POLL_MS = 1000  # IVssAsync::Wait slice: the deadline is checked between slices


@dataclass(frozen=True)
class VssSettings:
    """The policy's VSS flags (``api.jobs.Policy.vss_*``), resolved by the agent."""

    consistency: str = "crash"  # "application": VSS writers (IVssBackupComponents); "crash": WMI, no writers
    backup_type: str = "copy"  # "copy" (VSS_BT_COPY: applications keep their log chains) or "full"
    writer_failure: str = "warn"  # "warn": a warning and crash-consistent data; "fail": the snapshot fails
    exclude_writers: tuple[str, ...] = ()  # writer names or class ids left out (DisableWriterClasses)
    timeout: float = 600.0  # seconds for each asynchronous step before it is cancelled
    in_progress_retries: int = 3  # VSS_E_SNAPSHOT_SET_IN_PROGRESS: tries after the first
    retry_wait: float = 60.0  # seconds between them

    def __post_init__(self) -> None:
        if self.consistency not in CONSISTENCY:
            raise ValueError(f"VSS consistency must be application or crash, not {self.consistency!r}")
        if self.backup_type not in BACKUP_TYPES:
            raise ValueError(f"VSS backup type must be copy or full, not {self.backup_type!r}")
        if self.writer_failure not in WRITER_FAILURE:
            raise ValueError(f"VSS writer failure must be warn or fail, not {self.writer_failure!r}")


class AppVssError(SnapshotError):
    """The application-consistent snapshot could not be taken; ``writers`` names failed writers."""

    def __init__(self, message: str, hresult: int | None = None, writers: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.hresult = hresult
        self.writers = writers


@dataclass
class ShadowSet:
    """A committed snapshot set: each volume root's shadow copy and device."""

    set_id: str
    snapshot_ids: dict[str, str]
    devices: dict[str, str] = field(default_factory=dict)
    selected: list[tuple[WriterMetadata, Component]] = field(default_factory=list)
    failed_writers: dict[str, str] = field(default_factory=dict)  # instance id -> message
    excluded: list[str] = field(default_factory=list)  # writer names left out

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self.failed_writers.values())


def _guid(text: str) -> str | None:
    m = _GUID.match(text.strip())
    return "{" + m.group(1).upper() + "}" if m else None


def _under(c: Component, parent: Component) -> bool:
    p, lp = parent.full_path.lower(), c.logical_path.lower()
    return bool(p) and (lp == p or lp.startswith(p + "\\"))


def _on(path: str, roots: list[str]) -> bool:
    up = path.upper()
    return any(up.startswith(r.upper()) or ntpath.splitdrive(up)[0] + "\\" == r.upper() for r in roots)


def select_components(writers: list[WriterMetadata], roots: list[str]) -> list[tuple[WriterMetadata, Component]]:
    """Each writer's top-level components (no other component's path above theirs) whose files,
    or their subcomponents' files, lie on a volume of the set: adding a component includes its
    subcomponents ("Working with Selectability and Logical Paths")."""
    chosen = []
    for w in writers:
        for top in w.components:
            if any(_under(top, other) for other in w.components if other is not top):
                continue
            family = [c for c in w.components if c is top or _under(c, top)]
            if any(_on(p, roots) for c in family for p in c.paths):
                chosen.append((w, top))
    return chosen


class AppConsistentVss:
    """Takes application-consistent snapshot sets. ``create`` makes one ``IVssBackupComponents``;
    ``clock`` and ``pause`` are the seams for deadlines and the in-progress retry; ``cancel`` (the
    run's) ends a wait or an asynchronous step within a poll slice (``Cancelled``, all released)."""

    def __init__(
        self,
        create: Callable[[], BackupComponents],
        settings: VssSettings,
        on_event: Callable[[Event], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], object] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.create = create
        self.settings = settings
        self._emit = on_event or (lambda _e: None)
        self.clock = clock
        self.cancel = cancel or threading.Event()
        self.pause: Callable[[float], object] = pause or self.cancel.wait

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled while taking the VSS snapshot set")

    @contextmanager
    def snapshot_set(self, volumes: list[str]) -> Iterator[ShadowSet]:
        roots = [volume_root(v) for v in volumes]
        try:
            exclude = self._excluded_ids()
        except VssComError as e:
            raise AppVssError(f"listing the VSS writers to leave out: {e}", e.hresult) from e
        attempt = 0
        while True:
            bc = self._new()
            committed: list[str] = []  # the set id once DoSnapshotSet made it
            try:
                shadow_set = self._take(bc, roots, exclude, committed)
                break
            except BaseException as e:
                self._abandon(bc, committed[0] if committed else None)
                if isinstance(e, VssComError) and e.hresult == VSS_E_SNAPSHOT_SET_IN_PROGRESS \
                        and attempt < self.settings.in_progress_retries:
                    attempt += 1
                    self._emit(Event(EventCode.VSS_SNAPSHOT_RETRY,
                                     f"another snapshot set is in progress ({e.method}); try {attempt + 1} of "
                                     f"{self.settings.in_progress_retries + 1} in {self.settings.retry_wait:g} s",
                                     details={"volumes": roots, "attempt": attempt + 1}))
                    self.pause(self.settings.retry_wait)
                    self._check_cancel()
                    continue
                if isinstance(e, VssComError):
                    raise AppVssError(f"application-consistent snapshot of {', '.join(roots)}: {e}", e.hresult) from e
                raise
        succeeded = False
        try:
            yield shadow_set
            succeeded = True
        finally:
            self._finish(bc, shadow_set, succeeded)

    # -- taking the set -----------------------------------------------------------------------

    def _new(self) -> BackupComponents:
        try:
            return self.create()
        except VssComError as e:
            raise AppVssError(f"the VSS requester could not be created: {e}", e.hresult) from e
        except (OSError, AttributeError) as e:  # vssapi.dll or one of its exports missing
            raise AppVssError(f"the VSS requester could not be created: {e}") from e

    def _excluded_ids(self) -> dict[str, str]:
        """Writer class id -> what the policy called it. Names need the writers' metadata from
        an object of their own (DisableWriterClasses works only before GatherWriterMetadata)."""
        ids: dict[str, str] = {}
        names: dict[str, str] = {}
        for entry in self.settings.exclude_writers:
            g = _guid(entry)
            if g:
                ids[g] = entry
            else:
                names[entry.strip().lower()] = entry
        if names:
            bc = self._new()
            try:
                bc.initialize_for_backup()
                self._run(bc.gather_writer_metadata(), "GatherWriterMetadata")
                for w in bc.writer_metadata():
                    if w.name.lower() in names:
                        ids[w.writer_id.upper()] = w.name
            finally:
                bc.release()
        return ids

    def _take(self, bc: BackupComponents, roots: list[str], exclude: dict[str, str],
              committed: list[str]) -> ShadowSet:
        s = self.settings
        bc.initialize_for_backup()
        bc.set_context(VSS_CTX_BACKUP)
        # components selected (only the writers with data on these volumes take part in the
        # backup document); no bootable system state: volumes are imaged, not system state
        bc.set_backup_state(True, False, BACKUP_TYPES[s.backup_type])
        if exclude:
            bc.disable_writer_classes(sorted(exclude))
        self._run(bc.gather_writer_metadata(), "GatherWriterMetadata")
        writers = [w for w in bc.writer_metadata() if w.writer_id.upper() not in exclude]
        selected = select_components(writers, roots)
        for w, c in selected:
            bc.add_component(w.instance_id, w.writer_id, c.type, c.logical_path, c.name)
        set_id = bc.start_snapshot_set()
        shadow_set = ShadowSet(set_id, {}, selected=selected, excluded=sorted(set(exclude.values())))
        for root in roots:
            shadow_set.snapshot_ids[root] = bc.add_to_snapshot_set(root)
        self._run(bc.prepare_for_backup(), "PrepareForBackup")
        self._check_writers(bc, shadow_set, "PrepareForBackup")
        self._run(bc.do_snapshot_set(), "DoSnapshotSet")
        committed.append(set_id)
        self._check_writers(bc, shadow_set, "DoSnapshotSet")
        for root, sid in shadow_set.snapshot_ids.items():
            shadow_set.devices[root] = bc.snapshot_device(sid)
        return shadow_set

    def _run(self, op: VssAsync, method: str) -> None:
        """Wait for an asynchronous step; past the deadline it is cancelled (``AppVssError``)."""
        deadline = self.clock() + self.settings.timeout
        try:
            while True:
                if self.cancel.is_set():
                    op.cancel()
                    self._check_cancel()
                left = deadline - self.clock()
                if left <= 0:
                    op.cancel()
                    raise AppVssError(f"IVssBackupComponents::{method} did not finish within "
                                      f"{self.settings.timeout:g} s; it was cancelled")
                op.wait(max(1, min(POLL_MS, int(left * 1000))))
                hr = op.status()
                if hr == VSS_S_ASYNC_PENDING:
                    continue
                if hr == VSS_S_ASYNC_FINISHED:
                    return
                if hr == VSS_S_ASYNC_CANCELLED:
                    raise AppVssError(f"IVssBackupComponents::{method} was cancelled")
                if hr & 0x80000000:
                    raise VssComError(f"IVssBackupComponents::{method}", hr)
                return  # another success code
        finally:
            op.release()

    def _statuses(self, bc: BackupComponents) -> list[WriterStatus]:
        self._run(bc.gather_writer_status(), "GatherWriterStatus")
        return bc.writer_status()

    def _check_writers(self, bc: BackupComponents, shadow_set: ShadowSet, step: str) -> None:
        new = [w for w in self._statuses(bc) if w.failed and w.instance_id not in shadow_set.failed_writers]
        if not new:
            return
        fail = self.settings.writer_failure == "fail"
        for w in new:
            message = _writer_message(w, step)
            shadow_set.failed_writers[w.instance_id] = message
            self._emit(Event(EventCode.VSS_WRITER_FAILED,
                             message + ("" if fail else "; its data in this backup is only crash-consistent"),
                             Level.ERROR if fail else Level.WARNING, _writer_details(w, step)))
        if fail:
            names = tuple(w.name for w in new)
            raise AppVssError(f"VSS writer(s) failed ({'; '.join(_writer_message(w, step) for w in new)}); "
                              "policy vss_writer_failure is fail", writers=names)

    # -- after the read -------------------------------------------------------------------------

    def _finish(self, bc: BackupComponents, shadow_set: ShadowSet, succeeded: bool) -> None:
        if succeeded:
            try:
                for w, c in shadow_set.selected:
                    bc.set_backup_succeeded(w.instance_id, w.writer_id, c.type, c.logical_path, c.name,
                                            w.instance_id not in shadow_set.failed_writers)
                self._run(bc.backup_complete(), "BackupComplete")
                for st in self._statuses(bc):
                    if st.failed and st.instance_id not in shadow_set.failed_writers:
                        self._emit(Event(EventCode.VSS_WRITER_FAILED,
                                         _writer_message(st, "BackupComplete") + "; the backup itself is stored",
                                         Level.WARNING, _writer_details(st, "BackupComplete")))
            except (VssComError, AppVssError) as e:
                self._emit(Event(EventCode.VSS_WRITER_FAILED,
                                 f"telling the writers the backup completed failed: {e}; the backup itself is stored",
                                 Level.WARNING, {"step": "BackupComplete"}))
        self._abandon(bc, shadow_set.set_id, aborted=not succeeded)

    def _abandon(self, bc: BackupComponents, set_id: str | None, aborted: bool = True) -> None:
        """AbortBackup (when not completed), delete the set, release the object: each step runs
        even when the one before failed; releasing is what frees a VSS_CTX_BACKUP set."""
        try:
            if aborted:
                try:
                    bc.abort_backup()
                except VssComError:
                    pass  # VSS_E_BAD_STATE before PrepareForBackup, or already aborted
            if set_id is not None:
                try:
                    bc.delete_snapshot_set(set_id)
                except VssComError as e:
                    self._emit(Event(EventCode.VSS_SNAPSHOT_DELETE_FAILED,
                                     f"deleting snapshot set {set_id} failed: {e}; releasing the requester frees it",
                                     details={"snapshot_set": set_id}))
        finally:
            bc.release()


def _writer_message(w: WriterStatus, step: str) -> str:
    return f"VSS writer '{w.name}' is in {w.state_name} after {step}: {describe(w.failure)}"


def _writer_details(w: WriterStatus, step: str) -> dict[str, object]:
    return {"writer": w.name, "writer_id": w.writer_id, "instance_id": w.instance_id, "state": w.state,
            "state_name": w.state_name, "failure": f"0x{w.failure:08X}", "step": step}


class AppVssSnapshotProvider:
    """The ``vss`` provider with writers: one volume's set from ``AppConsistentVss``. When the
    sequence itself fails (not a writer) and policy allows it, the crash-consistent WMI copy is
    taken instead (``VSS_CONSISTENCY_FALLBACK``)."""

    name = "vss"

    def __init__(self, app: AppConsistentVss, fallback: VssSnapshotProvider | None, api: Win32 | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.app = app
        self.fallback = fallback
        self.api = api
        self._emit = on_event or (lambda _e: None)

    @contextmanager
    def snapshot(self, source: str) -> Iterator[Snapshot]:
        try:
            root = volume_root(source)
        except ShadowCopyError as e:
            raise SnapshotError(str(e)) from e
        with ExitStack() as stack:
            try:
                shadow_set = stack.enter_context(self.app.snapshot_set([root]))
            except AppVssError as e:
                if self.fallback is None or e.writers or self.app.settings.writer_failure == "fail":
                    self._emit(Event(EventCode.VSS_SNAPSHOT_FAILED, str(e),
                                     details={"volume": root, "hresult": _hex(e.hresult), "writers": list(e.writers)}))
                    raise
                self._emit(Event(EventCode.VSS_CONSISTENCY_FALLBACK,
                                 f"{e}; taking a crash-consistent shadow copy instead",
                                 details={"volume": root, "hresult": _hex(e.hresult)}))
                snap = stack.enter_context(self.fallback.snapshot(source))
                yield replace(snap, consistency="crash", warnings=(f"application-consistent snapshot failed: {e}",))
                return
            device = shadow_set.devices[root]
            writers = sorted({w.name for w, _c in shadow_set.selected})
            self._emit(Event(EventCode.VSS_SNAPSHOT_CREATED,
                             f"application-consistent shadow copy of {root} at {device} "
                             f"({len(shadow_set.selected)} component(s) of {len(writers)} writer(s))",
                             details={"volume": source, "shadow_id": shadow_set.snapshot_ids[root], "device": device,
                                      "snapshot_set": shadow_set.set_id, "consistency": "application",
                                      "writers": writers, "excluded_writers": shadow_set.excluded,
                                      "backup_type": self.app.settings.backup_type}))
            used, skip, names = ntfs_hints(self.api, device)
            yield Snapshot(device, source, self.name, shadow_set.snapshot_ids[root], used, skip, names,
                           consistency="application", warnings=shadow_set.warnings)


def _hex(hr: int | None) -> str | None:
    return None if hr is None else f"0x{hr:08X}"


__all__ = [
    "AppConsistentVss", "AppVssError", "AppVssSnapshotProvider", "ShadowSet", "VssSettings", "select_components",
]
