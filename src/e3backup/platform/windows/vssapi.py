"""The VSS requester API (``vsbackup.h``, ``vss.h``) as the Windows layer offers it: codes, records, the seam.

``BackupComponents`` is one ``IVssBackupComponents`` object, method for method, in the calls a
backup makes; ``VssAsync`` is its ``IVssAsync``. ``vsscom.py`` implements both over the COM vtables
with ctypes (Windows only); tests replay the values Microsoft documents. A failed call raises
``VssComError`` naming the method and its HRESULT. Nothing here decides anything: choosing writers
and components, retries, timeouts and cleanup are ``sources.snapshot.appvss``'s.

Values: HRESULTs from ``vsserror.h`` / ``winerror.h`` (Microsoft's "VSS error codes" and each
method's page), enums from ``vss.h`` / ``vswriter.h`` (``VSS_WRITER_STATE``, ``VSS_BACKUP_TYPE``,
``VSS_COMPONENT_TYPE``, ``VSS_OBJECT_TYPE``, ``VSS_SNAPSHOT_CONTEXT``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ...errors import E3Error

# HRESULTs, as unsigned 32-bit values
S_OK = 0
S_FALSE = 1
VSS_S_ASYNC_PENDING = 0x00042309
VSS_S_ASYNC_FINISHED = 0x0004230A
VSS_S_ASYNC_CANCELLED = 0x0004230B
E_UNEXPECTED = 0x8000FFFF
E_ACCESSDENIED = 0x80070005
E_OUTOFMEMORY = 0x8007000E
E_INVALIDARG = 0x80070057
VSS_E_BAD_STATE = 0x80042301
VSS_E_UNEXPECTED = 0x80042302
VSS_E_PROVIDER_NOT_REGISTERED = 0x80042304
VSS_E_PROVIDER_VETO = 0x80042306
VSS_E_OBJECT_NOT_FOUND = 0x80042308
VSS_E_VOLUME_NOT_SUPPORTED = 0x8004230C
VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER = 0x8004230E
VSS_E_UNEXPECTED_PROVIDER_ERROR = 0x8004230F
VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED = 0x80042312
VSS_E_FLUSH_WRITES_TIMEOUT = 0x80042313
VSS_E_HOLD_WRITES_TIMEOUT = 0x80042314
VSS_E_UNEXPECTED_WRITER_ERROR = 0x80042315
VSS_E_SNAPSHOT_SET_IN_PROGRESS = 0x80042316
VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED = 0x80042317
VSS_E_WRITER_INFRASTRUCTURE = 0x80042318
VSS_E_WRITER_NOT_RESPONDING = 0x80042319
VSS_E_UNSUPPORTED_CONTEXT = 0x8004231B
VSS_E_VOLUME_IN_USE = 0x8004231D
VSS_E_INSUFFICIENT_STORAGE = 0x8004231F
VSS_E_REBOOT_REQUIRED = 0x80042327
VSS_E_TRANSACTION_FREEZE_TIMEOUT = 0x80042328
VSS_E_TRANSACTION_THAW_TIMEOUT = 0x80042329
VSS_E_NESTED_VOLUME_LIMIT = 0x8004232C
VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT = 0x800423F0
VSS_E_WRITERERROR_OUTOFRESOURCES = 0x800423F1
VSS_E_WRITERERROR_TIMEOUT = 0x800423F2
VSS_E_WRITERERROR_RETRYABLE = 0x800423F3
VSS_E_WRITERERROR_NONRETRYABLE = 0x800423F4
VSS_E_WRITERERROR_RECOVERY_FAILED = 0x800423F5

HRESULTS: dict[int, tuple[str, str]] = {
    E_ACCESSDENIED: ("E_ACCESSDENIED", "run the agent as an administrator or as SYSTEM (the service does)"),
    E_OUTOFMEMORY: ("E_OUTOFMEMORY", "the machine is out of memory"),
    E_INVALIDARG: ("E_INVALIDARG", "an argument was refused (the volume name?)"),
    E_UNEXPECTED: ("E_UNEXPECTED", "see the Application event log (VSS source)"),
    VSS_E_BAD_STATE: ("VSS_E_BAD_STATE", "a call out of the documented order (report it)"),
    VSS_E_UNEXPECTED: ("VSS_E_UNEXPECTED", "see the Application event log (VSS source)"),
    VSS_E_PROVIDER_NOT_REGISTERED: ("VSS_E_PROVIDER_NOT_REGISTERED",
                                    "the VSS provider is missing: repair the Volume Shadow Copy service"),
    VSS_E_PROVIDER_VETO: ("VSS_E_PROVIDER_VETO", "the provider refused; see the Application event log"),
    VSS_E_OBJECT_NOT_FOUND: ("VSS_E_OBJECT_NOT_FOUND", "the volume or shadow copy does not exist"),
    VSS_E_VOLUME_NOT_SUPPORTED: ("VSS_E_VOLUME_NOT_SUPPORTED",
                                 "this volume cannot be shadow-copied (FAT, a network or removable drive?)"),
    VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER: ("VSS_E_VOLUME_NOT_SUPPORTED_BY_PROVIDER",
                                             "no provider can shadow this volume"),
    VSS_E_UNEXPECTED_PROVIDER_ERROR: ("VSS_E_UNEXPECTED_PROVIDER_ERROR",
                                      "the provider failed; Microsoft advises retrying in ten minutes"),
    VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED: ("VSS_E_MAXIMUM_NUMBER_OF_VOLUMES_REACHED",
                                              "too many volumes in one snapshot set"),
    VSS_E_FLUSH_WRITES_TIMEOUT: ("VSS_E_FLUSH_WRITES_TIMEOUT",
                                 "writes could not be flushed in time (a busy volume); retry later"),
    VSS_E_HOLD_WRITES_TIMEOUT: ("VSS_E_HOLD_WRITES_TIMEOUT",
                                "writes could not be held in time (a busy volume); retry later"),
    VSS_E_UNEXPECTED_WRITER_ERROR: ("VSS_E_UNEXPECTED_WRITER_ERROR", "a writer failed; vssadmin list writers"),
    VSS_E_SNAPSHOT_SET_IN_PROGRESS: ("VSS_E_SNAPSHOT_SET_IN_PROGRESS",
                                     "another backup is taking a snapshot; retry later"),
    VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED: ("VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED",
                                                "delete old shadow copies (vssadmin list shadows)"),
    VSS_E_WRITER_INFRASTRUCTURE: ("VSS_E_WRITER_INFRASTRUCTURE",
                                  "VSS could not reach its writers; restart the Volume Shadow Copy service"),
    VSS_E_WRITER_NOT_RESPONDING: ("VSS_E_WRITER_NOT_RESPONDING", "a writer does not answer; vssadmin list writers"),
    VSS_E_UNSUPPORTED_CONTEXT: ("VSS_E_UNSUPPORTED_CONTEXT", "this Windows edition refuses the snapshot context"),
    VSS_E_VOLUME_IN_USE: ("VSS_E_VOLUME_IN_USE", "another process holds the volume; retry later"),
    VSS_E_INSUFFICIENT_STORAGE: ("VSS_E_INSUFFICIENT_STORAGE",
                                 "the shadow storage area is full: free space or enlarge it "
                                 "(vssadmin resize shadowstorage)"),
    VSS_E_REBOOT_REQUIRED: ("VSS_E_REBOOT_REQUIRED", "the provider needs a restart of the machine"),
    VSS_E_TRANSACTION_FREEZE_TIMEOUT: ("VSS_E_TRANSACTION_FREEZE_TIMEOUT", "DTC or KTM could not be frozen"),
    VSS_E_TRANSACTION_THAW_TIMEOUT: ("VSS_E_TRANSACTION_THAW_TIMEOUT", "DTC or KTM could not be thawed"),
    VSS_E_NESTED_VOLUME_LIMIT: ("VSS_E_NESTED_VOLUME_LIMIT", "the volume is nested too deeply (a VHD in a VHD)"),
    VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT: ("VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT",
                                             "the snapshot set lacks a volume the writer's data is on"),
    VSS_E_WRITERERROR_OUTOFRESOURCES: ("VSS_E_WRITERERROR_OUTOFRESOURCES", "the writer ran out of resources"),
    VSS_E_WRITERERROR_TIMEOUT: ("VSS_E_WRITERERROR_TIMEOUT",
                                "the writer could not hold its application frozen long enough"),
    VSS_E_WRITERERROR_RETRYABLE: ("VSS_E_WRITERERROR_RETRYABLE", "a transient writer error; the next run may pass"),
    VSS_E_WRITERERROR_NONRETRYABLE: ("VSS_E_WRITERERROR_NONRETRYABLE",
                                     "the writer failed for good; see its application's event log"),
    VSS_E_WRITERERROR_RECOVERY_FAILED: ("VSS_E_WRITERERROR_RECOVERY_FAILED",
                                        "the writer could not recover the shadow copy"),
}

# VSS_WRITER_STATE (vss.h)
VSS_WS_UNKNOWN = 0
VSS_WS_STABLE = 1
VSS_WS_WAITING_FOR_FREEZE = 2
VSS_WS_WAITING_FOR_THAW = 3
VSS_WS_WAITING_FOR_POST_SNAPSHOT = 4
VSS_WS_WAITING_FOR_BACKUP_COMPLETE = 5
VSS_WS_FAILED_AT_IDENTIFY = 6
VSS_WS_FAILED_AT_PREPARE_BACKUP = 7
VSS_WS_FAILED_AT_PREPARE_SNAPSHOT = 8
VSS_WS_FAILED_AT_FREEZE = 9
VSS_WS_FAILED_AT_THAW = 10
VSS_WS_FAILED_AT_POST_SNAPSHOT = 11
VSS_WS_FAILED_AT_BACKUP_COMPLETE = 12
VSS_WS_FAILED_AT_PRE_RESTORE = 13
VSS_WS_FAILED_AT_POST_RESTORE = 14
VSS_WS_FAILED_AT_BACKUPSHUTDOWN = 15
WRITER_STATES = {
    0: "VSS_WS_UNKNOWN", 1: "VSS_WS_STABLE", 2: "VSS_WS_WAITING_FOR_FREEZE", 3: "VSS_WS_WAITING_FOR_THAW",
    4: "VSS_WS_WAITING_FOR_POST_SNAPSHOT", 5: "VSS_WS_WAITING_FOR_BACKUP_COMPLETE", 6: "VSS_WS_FAILED_AT_IDENTIFY",
    7: "VSS_WS_FAILED_AT_PREPARE_BACKUP", 8: "VSS_WS_FAILED_AT_PREPARE_SNAPSHOT", 9: "VSS_WS_FAILED_AT_FREEZE",
    10: "VSS_WS_FAILED_AT_THAW", 11: "VSS_WS_FAILED_AT_POST_SNAPSHOT", 12: "VSS_WS_FAILED_AT_BACKUP_COMPLETE",
    13: "VSS_WS_FAILED_AT_PRE_RESTORE", 14: "VSS_WS_FAILED_AT_POST_RESTORE", 15: "VSS_WS_FAILED_AT_BACKUPSHUTDOWN",
}
FAILED_STATES = frozenset(range(VSS_WS_FAILED_AT_IDENTIFY, VSS_WS_FAILED_AT_BACKUPSHUTDOWN + 1))

# VSS_BACKUP_TYPE (vss.h)
VSS_BT_FULL = 1
VSS_BT_COPY = 5
# VSS_COMPONENT_TYPE (vswriter.h)
VSS_CT_DATABASE = 1
VSS_CT_FILEGROUP = 2
# VSS_OBJECT_TYPE (vss.h)
VSS_OBJECT_SNAPSHOT_SET = 2
# VSS_SNAPSHOT_CONTEXT (vss.h): VSS_CTX_BACKUP is non-persistent and auto-released: the shadow
# copies go when the IVssBackupComponents object is released, also when the process dies.
VSS_CTX_BACKUP = 0
GUID_NULL = "{00000000-0000-0000-0000-000000000000}"


def hresult_name(hr: int) -> str:
    hr &= 0xFFFFFFFF
    return HRESULTS.get(hr, (f"HRESULT 0x{hr:08X}", ""))[0]


def describe(hr: int) -> str:
    """``VSS_E_PROVIDER_VETO (0x80042306): the provider refused; ...``."""
    hr &= 0xFFFFFFFF
    name, hint = HRESULTS.get(hr, (f"HRESULT 0x{hr:08X}", "see the Application event log (VSS source)"))
    return f"{name} (0x{hr:08X}): {hint}" if name.startswith(("VSS", "E_")) else f"{name}: {hint}"


class VssComError(E3Error):
    """A VSS call failed: ``method`` (``IVssBackupComponents::DoSnapshotSet``) and its ``hresult``."""

    def __init__(self, method: str, hresult: int) -> None:
        self.method = method
        self.hresult = hresult & 0xFFFFFFFF
        super().__init__(f"{method} failed: {describe(self.hresult)}")

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (self.method, self.hresult))


@dataclass(frozen=True)
class Component:
    """One ``VSS_COMPONENTINFO`` (``IVssWMComponent::GetComponentInfo``) and the paths of its files
    (``IVssWMFiledesc::GetPath`` of its files, database files and log files; variables expanded)."""

    type: int
    logical_path: str
    name: str
    selectable: bool
    notify_on_backup_complete: bool
    paths: tuple[str, ...] = ()

    @property
    def full_path(self) -> str:
        return f"{self.logical_path}\\{self.name}" if self.logical_path else self.name


@dataclass(frozen=True)
class WriterMetadata:
    """``IVssExamineWriterMetadata::GetIdentity`` and its components."""

    instance_id: str
    writer_id: str  # the writer's class id
    name: str
    components: tuple[Component, ...] = ()


@dataclass(frozen=True)
class WriterStatus:
    """``IVssBackupComponents::GetWriterStatus``: the writer, its state and failure HRESULT."""

    instance_id: str
    writer_id: str
    name: str
    state: int
    failure: int = S_OK

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def state_name(self) -> str:
        return WRITER_STATES.get(self.state, f"state {self.state}")


class VssAsync(Protocol):
    """``IVssAsync``: ``wait`` (``Wait(dwMilliseconds)``), ``status`` (``QueryStatus``'s
    ``pHrResult``: ``VSS_S_ASYNC_PENDING``, ``_FINISHED``, ``_CANCELLED`` or the failure),
    ``cancel`` and ``release``."""

    def wait(self, milliseconds: int) -> None: ...
    def status(self) -> int: ...
    def cancel(self) -> None: ...
    def release(self) -> None: ...


class BackupComponents(Protocol):
    """One ``IVssBackupComponents`` (``CreateVssBackupComponents``); good for one backup."""

    def initialize_for_backup(self) -> None: ...
    def set_context(self, context: int) -> None: ...
    def set_backup_state(self, select_components: bool, bootable_system_state: bool, backup_type: int) -> None: ...
    def disable_writer_classes(self, writer_ids: list[str]) -> None: ...
    def gather_writer_metadata(self) -> VssAsync: ...
    def writer_metadata(self) -> list[WriterMetadata]:
        """``GetWriterMetadataCount`` / ``GetWriterMetadata`` (then ``FreeWriterMetadata``)."""
        ...
    def add_component(self, instance_id: str, writer_id: str, component_type: int, logical_path: str,
                      name: str) -> None: ...
    def start_snapshot_set(self) -> str: ...
    def add_to_snapshot_set(self, volume: str) -> str: ...
    def prepare_for_backup(self) -> VssAsync: ...
    def do_snapshot_set(self) -> VssAsync: ...
    def gather_writer_status(self) -> VssAsync: ...
    def writer_status(self) -> list[WriterStatus]:
        """``GetWriterStatusCount`` / ``GetWriterStatus`` (then ``FreeWriterStatus``)."""
        ...
    def snapshot_device(self, snapshot_id: str) -> str:
        """``GetSnapshotProperties``' ``m_pwszSnapshotDeviceObject`` (then ``VssFreeSnapshotProperties``)."""
        ...
    def set_backup_succeeded(self, instance_id: str, writer_id: str, component_type: int, logical_path: str,
                             name: str, succeeded: bool) -> None: ...
    def backup_complete(self) -> VssAsync: ...
    def abort_backup(self) -> None: ...
    def delete_snapshot_set(self, set_id: str) -> None:
        """``DeleteSnapshots(set_id, VSS_OBJECT_SNAPSHOT_SET, bForceDelete=TRUE)``."""
        ...
    def release(self) -> None: ...


__all__ = [
    "FAILED_STATES", "HRESULTS", "VSS_BT_COPY", "VSS_BT_FULL", "VSS_CTX_BACKUP", "VSS_E_SNAPSHOT_SET_IN_PROGRESS",
    "VSS_S_ASYNC_CANCELLED", "VSS_S_ASYNC_FINISHED", "VSS_S_ASYNC_PENDING", "WRITER_STATES", "BackupComponents",
    "Component", "VssAsync", "VssComError", "WriterMetadata", "WriterStatus", "describe", "hresult_name",
]
