"""A double of ``IVssBackupComponents`` (the ``BackupComponents`` seam) answering as Microsoft documents.

Sources (learn.microsoft.com): "Overview of Processing a Backup Under VSS" (the order of calls; a
call out of order answers ``VSS_E_BAD_STATE``, as each method's page lists), the
``IVssBackupComponents`` method pages (``StartSnapshotSet`` and ``DoSnapshotSet`` answer
``VSS_E_SNAPSHOT_SET_IN_PROGRESS`` while another set is being made; ``DisableWriterClasses``
counts only before ``GatherWriterMetadata``), "IVssAsync::QueryStatus" (``VSS_S_ASYNC_PENDING``,
``VSS_S_ASYNC_FINISHED``, ``VSS_S_ASYNC_CANCELLED``), "VSS_WRITER_STATE enumeration" and "Writer
states" (after ``DoSnapshotSet`` a healthy writer waits for ``BackupComplete``, after it it is
stable), "VSS_COMPONENTINFO structure", "VSS_SNAPSHOT_CONTEXT" (``VSS_CTX_BACKUP`` copies go when
the object is released). Writer names and class ids are those ``vssadmin list writers`` prints.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from e3backup.platform.windows.vssapi import (
    S_OK,
    VSS_CTX_BACKUP,
    VSS_E_BAD_STATE,
    VSS_E_SNAPSHOT_SET_IN_PROGRESS,
    VSS_S_ASYNC_CANCELLED,
    VSS_S_ASYNC_FINISHED,
    VSS_S_ASYNC_PENDING,
    VSS_WS_STABLE,
    VSS_WS_WAITING_FOR_BACKUP_COMPLETE,
    Component,
    VssComError,
    WriterMetadata,
    WriterStatus,
)

SQL_ID = "{A65FAA63-5EA8-4EBC-9DBD-A0C4DB26912A}"  # SqlServerWriter
REGISTRY_ID = "{AFBAB4A2-367D-4D15-A586-71DBB18F8485}"  # Registry Writer
EXCHANGE_ID = "{76FE1AC4-15F7-4BCD-987E-8E1ACB462FB7}"  # Microsoft Exchange Writer


def _id() -> str:
    return "{" + str(uuid.uuid4()).upper() + "}"


def default_writers() -> list[WriterMetadata]:
    """SQL Server's databases and the registry on C:, Exchange's database on D: only."""
    return [
        WriterMetadata(_id(), SQL_ID, "SqlServerWriter", (
            Component(1, "SRV01", "master", True, True,
                      ("C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\DATA",)),
            Component(1, "SRV01", "SalesDb", True, True, ("C:\\SQLData\\Sales",)),
        )),
        WriterMetadata(_id(), REGISTRY_ID, "Registry Writer", (
            Component(2, "", "Registry", False, False, ("C:\\Windows\\System32\\config",)),
        )),
        WriterMetadata(_id(), EXCHANGE_ID, "Microsoft Exchange Writer", (
            Component(1, "Microsoft Exchange Server\\Microsoft Information Store", "Mailbox01", True, True, ()),
            Component(1, "Microsoft Exchange Server\\Microsoft Information Store\\Mailbox01", "File", True, True,
                      ("D:\\ExchangeData\\Mailbox01",)),
        )),
    ]


class FakeAsync:
    """``IVssAsync``: pending for ``polls`` QueryStatus calls (``None``: forever), then ``result``."""

    def __init__(self, vss: FakeVss, method: str, result: int, polls: int | None = 1) -> None:
        self.vss, self.method, self.result, self.polls = vss, method, result, polls
        self.cancelled = self.released = False
        vss.asyncs.append(self)

    def wait(self, milliseconds: int) -> None:
        self.vss.now += milliseconds / 1000  # Wait(dwMilliseconds) returns after at most that

    def status(self) -> int:
        if self.cancelled:
            return VSS_S_ASYNC_CANCELLED
        if self.polls is None or self.polls > 0:
            if self.polls is not None:
                self.polls -= 1
            return VSS_S_ASYNC_PENDING
        return self.result

    def cancel(self) -> None:
        self.cancelled = True

    def release(self) -> None:
        self.released = True


@dataclass
class FakeVss:
    """The machine's VSS service: writers, live shadow copies, injected failures, a clock."""

    writers: list[WriterMetadata] = field(default_factory=default_writers)
    fail: dict[str, int] = field(default_factory=dict)  # method -> HRESULT (call, or its IVssAsync's result)
    in_progress: int = 0  # StartSnapshotSet answers VSS_E_SNAPSHOT_SET_IN_PROGRESS this many times
    # (writer name, after which step) -> (VSS_WRITER_STATE, hrFailure)
    states: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    hang: str = ""  # this asynchronous method never finishes
    now: float = 0.0
    live: dict[str, tuple[str, str]] = field(default_factory=dict)  # snapshot id -> (set id, device)
    objects: list[FakeBackupComponents] = field(default_factory=list)
    asyncs: list[FakeAsync] = field(default_factory=list)
    counter: int = 0

    def create(self) -> FakeBackupComponents:
        bc = FakeBackupComponents(self)
        self.objects.append(bc)
        return bc

    def clock(self) -> float:
        return self.now


class FakeBackupComponents:
    def __init__(self, vss: FakeVss) -> None:
        self.vss = vss
        self.calls: list[tuple[object, ...]] = []
        self.step = ""  # the last step done, for the documented order
        self.disabled: set[str] = set()
        self.set_id = ""
        self.snapshots: dict[str, str] = {}  # snapshot id -> volume
        self.released = False
        self.last = ""  # the step GetWriterStatus reports on

    def _call(self, name: str, *args: object, after: tuple[str, ...] = ()) -> None:
        assert not self.released, f"{name} on a released IVssBackupComponents"
        self.calls.append((name, *args))
        if after and self.step not in after:
            raise VssComError(f"IVssBackupComponents::{name}", VSS_E_BAD_STATE)
        hr = self.vss.fail.get(name, S_OK)
        if hr and name not in _ASYNC:
            raise VssComError(f"IVssBackupComponents::{name}", hr)

    def _async(self, name: str, after: tuple[str, ...]) -> FakeAsync:
        self._call(name, after=after)
        self.step = name
        return FakeAsync(self.vss, name, self.vss.fail.get(name, VSS_S_ASYNC_FINISHED),
                         None if self.vss.hang == name else 1)

    def names(self) -> list[str]:
        return [str(c[0]) for c in self.calls]

    def initialize_for_backup(self) -> None:
        self._call("InitializeForBackup", after=("",))
        self.step = "InitializeForBackup"

    def set_context(self, context: int) -> None:
        self._call("SetContext", context, after=("InitializeForBackup",))
        assert context == VSS_CTX_BACKUP
        self.step = "SetContext"

    def set_backup_state(self, select_components: bool, bootable_system_state: bool, backup_type: int) -> None:
        self._call("SetBackupState", select_components, bootable_system_state, backup_type,
                   after=("InitializeForBackup", "SetContext"))
        self.step = "SetBackupState"

    def disable_writer_classes(self, writer_ids: list[str]) -> None:
        self._call("DisableWriterClasses", tuple(writer_ids), after=("SetBackupState", "SetContext"))
        self.disabled |= {w.upper() for w in writer_ids}  # before GatherWriterMetadata: it counts

    def gather_writer_metadata(self) -> FakeAsync:
        return self._async("GatherWriterMetadata", ("InitializeForBackup", "SetContext", "SetBackupState"))

    def _writers(self) -> list[WriterMetadata]:
        return [w for w in self.vss.writers if w.writer_id.upper() not in self.disabled]

    def writer_metadata(self) -> list[WriterMetadata]:
        self._call("GetWriterMetadata", after=("GatherWriterMetadata",))
        return self._writers()

    def add_component(self, instance_id: str, writer_id: str, component_type: int, logical_path: str,
                      name: str) -> None:
        self._call("AddComponent", instance_id, writer_id, component_type, logical_path, name,
                   after=("GatherWriterMetadata",))

    def start_snapshot_set(self) -> str:
        self._call("StartSnapshotSet", after=("GatherWriterMetadata",))
        if self.vss.in_progress:
            self.vss.in_progress -= 1
            raise VssComError("IVssBackupComponents::StartSnapshotSet", VSS_E_SNAPSHOT_SET_IN_PROGRESS)
        self.step = "StartSnapshotSet"
        self.set_id = _id()
        return self.set_id

    def add_to_snapshot_set(self, volume: str) -> str:
        self._call("AddToSnapshotSet", volume, after=("StartSnapshotSet",))
        sid = _id()
        self.snapshots[sid] = volume
        return sid

    def prepare_for_backup(self) -> FakeAsync:
        return self._async("PrepareForBackup", ("StartSnapshotSet",))

    def do_snapshot_set(self) -> FakeAsync:
        op = self._async("DoSnapshotSet", ("PrepareForBackup",))
        if op.result == VSS_S_ASYNC_FINISHED and op.polls is not None:
            for sid in self.snapshots:
                self.vss.counter += 1
                device = f"\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy{self.vss.counter}"
                self.vss.live[sid] = (self.set_id, device)
        return op

    def gather_writer_status(self) -> FakeAsync:
        self.last = self.step
        self._call("GatherWriterStatus", after=("PrepareForBackup", "DoSnapshotSet", "BackupComplete"))
        self.step = self.last  # gathering status is no step of the sequence
        return FakeAsync(self.vss, "GatherWriterStatus", VSS_S_ASYNC_FINISHED)

    def writer_status(self) -> list[WriterStatus]:
        self._call("GetWriterStatus")
        healthy = VSS_WS_WAITING_FOR_BACKUP_COMPLETE if self.last == "DoSnapshotSet" else VSS_WS_STABLE
        out = []
        for w in self._writers():
            failed = [self.vss.states.get((w.name, s)) for s in _STEPS[: _STEPS.index(self.last) + 1]]
            state, hr = next((f for f in reversed(failed) if f), (healthy, S_OK))
            out.append(WriterStatus(w.instance_id, w.writer_id, w.name, state, hr))
        return out

    def snapshot_device(self, snapshot_id: str) -> str:
        self._call("GetSnapshotProperties", snapshot_id, after=("DoSnapshotSet",))
        return self.vss.live[snapshot_id][1]

    def set_backup_succeeded(self, instance_id: str, writer_id: str, component_type: int, logical_path: str,
                             name: str, succeeded: bool) -> None:
        self._call("SetBackupSucceeded", writer_id, logical_path, name, succeeded, after=("DoSnapshotSet",))

    def backup_complete(self) -> FakeAsync:
        return self._async("BackupComplete", ("DoSnapshotSet",))

    def abort_backup(self) -> None:
        self._call("AbortBackup")
        if self.step in ("", "InitializeForBackup", "SetContext", "SetBackupState", "GatherWriterMetadata",
                         "StartSnapshotSet"):
            raise VssComError("IVssBackupComponents::AbortBackup", VSS_E_BAD_STATE)  # nothing prepared yet
        self.step = "AbortBackup"

    def delete_snapshot_set(self, set_id: str) -> None:
        self._call("DeleteSnapshots", set_id)
        for sid in [s for s, (owner, _d) in self.vss.live.items() if owner == set_id]:
            del self.vss.live[sid]

    def release(self) -> None:
        self.calls.append(("Release",))
        self.released = True
        for sid in [s for s, (owner, _d) in self.vss.live.items() if owner == self.set_id]:
            del self.vss.live[sid]  # VSS_CTX_BACKUP: auto-release


_ASYNC = ("GatherWriterMetadata", "PrepareForBackup", "DoSnapshotSet", "BackupComplete")
_STEPS = ["", "InitializeForBackup", "SetContext", "SetBackupState", "GatherWriterMetadata", "StartSnapshotSet",
          "PrepareForBackup", "DoSnapshotSet", "BackupComplete", "AbortBackup"]
