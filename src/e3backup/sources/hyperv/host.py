"""`HyperVHost`: everything Hyper-V-specific the engine needs, behind one small protocol.

Two implementations: `wmi.WmiHost` (a real host, through PowerShell's CIM cmdlets on
`root\\virtualization\\v2`) and `sim.SimHost` (a folder of real VHDX files whose guest writes are
recorded as RCT ranges; part of the product, for demos and tests). The engine above never knows
which one it talks to.

Names follow WMI: a *checkpoint* is a recovery `Msvm_VirtualSystemSettingData` made by
`CreateSnapshot(SnapshotType=32768)`; converting it gives a *reference point*
(`Msvm_VirtualSystemReferencePoint`) whose `ResilientChangeTrackingIdentifiers` are parallel to
its `VirtualDiskIdentifiers`: here that pair is one dict, disk identifier -> RCT ID.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from ...errors import E3Error

# virtdisk / WMI errors that mean "the chain is broken" (golang.org/x/sys/windows zerrors_windows.go;
# the same HRESULTs come back from GetVirtualDiskChanges' job as ErrorCode).
ERROR_VHD_INVALID_CHANGE_TRACKING_ID = 0xC03A0029
ERROR_VHD_CHANGE_TRACKING_DISABLED = 0xC03A002A
ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION = 0xC03A0030
RCT_ERRORS = {
    ERROR_VHD_INVALID_CHANGE_TRACKING_ID: (
        "the RCT ID is not valid for this disk (ERROR_VHD_INVALID_CHANGE_TRACKING_ID)"
    ),
    ERROR_VHD_CHANGE_TRACKING_DISABLED: (
        "change tracking is disabled on the disk (ERROR_VHD_CHANGE_TRACKING_DISABLED)"
    ),
    ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION: (
        "the disk has no change tracking information for the RCT ID "
        "(ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION)"
    ),
}

CONSISTENCY_APPLICATION = "application"
CONSISTENCY_CRASH = "crash"
DISKS_DIR = "Virtual Hard Disks"  # what a VM restore writes and an import reads (Hyper-V's names)
CONFIG_DIR = "Virtual Machines"
RCT_MIN_VERSION = (6, 2)  # VM configuration version that has RCT (Windows Server 2016)


class HyperVError(E3Error):
    """A Hyper-V operation failed; the message names the VM or object and the host's reason."""


class ConsistencyUnavailable(HyperVError):
    """The guest could not take part in an application-consistent (production) checkpoint."""


class RctError(HyperVError):
    """Changed ranges could not be had for an RCT ID: the chain is broken (``code`` says why)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code

    @property
    def reason(self) -> str:
        return RCT_ERRORS.get(self.code, f"error 0x{self.code:08X}")


@dataclass(frozen=True)
class VirtualDisk:
    identifier: str  # VirtualDiskIdentifier: stable for the disk's life, the key of the chain state
    path: str  # the VM's disk as configured (a VHDX, or the leaf AVHDX of a chain)
    size: int  # virtual size in bytes
    file_size: int = 0
    controller: str = ""


@dataclass(frozen=True)
class VmInfo:
    id: str  # Msvm_ComputerSystem.Name: the VM's GUID
    name: str  # ElementName
    state: str  # Running, Off, Saved, Paused...
    generation: int
    version: str  # configuration version, e.g. "9.0"
    disks: tuple[VirtualDisk, ...] = ()
    integration_services: dict[str, bool] = field(default_factory=dict)
    guest_os: str = "unknown"  # windows, linux, unknown
    change_tracking: bool = False  # RCT enabled on every disk

    @property
    def rct_supported(self) -> bool:
        try:
            major, minor = (int(x) for x in ([*self.version.split("."), "0"])[:2])
        except ValueError:
            return False
        return (major, minor) >= RCT_MIN_VERSION

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "generation": self.generation,
            "version": self.version,
            "rct_supported": self.rct_supported,
            "change_tracking": self.change_tracking,
            "guest_os": self.guest_os,
            "integration_services": dict(self.integration_services),
            "disks": [
                {"identifier": d.identifier, "path": d.path, "size": d.size, "file_size": d.file_size,
                 "controller": d.controller}
                for d in self.disks
            ],
        }


@dataclass(frozen=True)
class Checkpoint:
    id: str  # the checkpoint's InstanceID (Microsoft:<guid>)
    vm_id: str
    name: str
    consistency: str  # application or crash


@dataclass(frozen=True)
class FrozenDisk:
    """One disk of a checkpoint: ``path`` is the frozen file to read (its AVHDX parents beside it)."""

    identifier: str
    path: str
    vm_path: str  # the disk as the VM has it (names the image in the repository)
    size: int


@dataclass(frozen=True)
class CheckpointFiles:
    disks: tuple[FrozenDisk, ...]
    config: tuple[str, ...]  # the checkpoint's configuration files (.vmcx, .vmrs, .vmgs; vm.json in the sim)


@dataclass(frozen=True)
class ReferencePoint:
    id: str
    vm_id: str
    rct_ids: dict[str, str]  # disk identifier -> RCT ID


class HyperVHost(Protocol):
    """The host: VMs, checkpoints, their disks, RCT ranges, reference points, removal, import."""

    name: str

    def list_vms(self) -> list[VmInfo]: ...

    def enable_change_tracking(self, vm_id: str) -> None:
        """Turn RCT on for every disk of the VM (a no-op where it is on)."""
        ...

    def create_checkpoint(self, vm_id: str, consistency: str, name: str) -> Checkpoint:
        """A recovery checkpoint; ``ConsistencyUnavailable`` when an application-consistent one
        was asked for and the guest cannot freeze."""
        ...

    def recovery_checkpoints(self, vm_id: str) -> list[Checkpoint]: ...

    def checkpoint_files(self, checkpoint: Checkpoint) -> CheckpointFiles: ...

    def changed_ranges(self, checkpoint: Checkpoint, disk: FrozenDisk, rct_id: str) -> list[tuple[int, int]]:
        """Byte ranges of ``disk`` written between ``rct_id`` and ``checkpoint``; ``RctError``
        when the host cannot say (a broken chain)."""
        ...

    def reference_points(self, vm_id: str) -> list[ReferencePoint]: ...

    def convert_to_reference_point(self, checkpoint: Checkpoint) -> ReferencePoint:
        """Seal the checkpoint: it is removed and its RCT IDs kept as a reference point."""
        ...

    def remove_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    def remove_reference_point(self, point: ReferencePoint) -> None: ...

    def import_vm(self, folder: str, name: str, new_id: bool, replace: bool) -> VmInfo:
        """Register the VM restored into ``folder`` (its configuration file and disks); ``new_id``
        gives it a new ID, ``replace`` removes the VM of the same ID first."""
        ...


def restored_disk_name(vm_path: str, extension: str = ".vhdx") -> str:
    """The file a disk is restored to: its base name, flat (an AVHDX chain becomes one file)."""
    return os.path.splitext(os.path.basename(vm_path.replace("\\", "/")))[0] + extension


__all__ = [
    "CONFIG_DIR",
    "CONSISTENCY_APPLICATION",
    "CONSISTENCY_CRASH",
    "DISKS_DIR",
    "ERROR_VHD_CHANGE_TRACKING_DISABLED",
    "ERROR_VHD_INVALID_CHANGE_TRACKING_ID",
    "ERROR_VHD_MISSING_CHANGE_TRACKING_INFORMATION",
    "Checkpoint",
    "CheckpointFiles",
    "ConsistencyUnavailable",
    "FrozenDisk",
    "HyperVError",
    "HyperVHost",
    "RctError",
    "ReferencePoint",
    "VirtualDisk",
    "VmInfo",
    "restored_disk_name",
]
