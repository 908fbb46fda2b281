"""Volumes and physical disks of a Windows machine, for the job wizard.

One PowerShell 5.1 script reads three CIM classes and prints them as one JSON object:
``Win32_Volume`` (DeviceID = the volume GUID path, DriveLetter, Label, FileSystem, Capacity,
FreeSpace, DriveType: 3 = local disk), and from the Storage namespace
(``root/Microsoft/Windows/Storage``, Windows 8 / Server 2012 and later) ``MSFT_Disk`` (Number,
FriendlyName, Size, PartitionStyle: 0 unknown, 1 MBR, 2 GPT) and ``MSFT_Partition`` (DiskNumber,
AccessPaths), which ties volumes to disks. Removable, network and CD drives are left out: they
cannot be imaged through VSS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .cim import CimError, PowerShell, run_json

SCRIPT = (
    "$v = @(Get-CimInstance -ClassName Win32_Volume | Select-Object DeviceID, DriveLetter, Label, FileSystem, "
    "Capacity, FreeSpace, DriveType); "
    "$d = @(Get-CimInstance -Namespace root/Microsoft/Windows/Storage -ClassName MSFT_Disk | "
    "Select-Object Number, FriendlyName, Size, PartitionStyle); "
    "$p = @(Get-CimInstance -Namespace root/Microsoft/Windows/Storage -ClassName MSFT_Partition | "
    "Select-Object DiskNumber, AccessPaths); "
    "@{Volumes = $v; Disks = $d; Partitions = $p} | ConvertTo-Json -Depth 4 -Compress"
)
DRIVE_FIXED = 3
PARTITION_STYLES = {0: "", 1: "mbr", 2: "gpt"}


@dataclass(frozen=True)
class WinVolume:
    path: str  # C: or the volume GUID path for a volume without a letter
    label: str
    filesystem: str
    size: int
    free: int | None
    guid_path: str


@dataclass
class WinDisk:
    number: int
    model: str
    size: int
    partition_style: str
    volumes: list[WinVolume] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"\\\\.\\PhysicalDrive{self.number}"


@dataclass
class WinInventory:
    disks: list[WinDisk]
    volumes: list[WinVolume]  # volumes on no listed disk (Storage Spaces, dynamic disks)


def _list(value: object) -> list[Any]:
    """5.1 prints a one-element array property as an array, but a single string as a string."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) else int(str(value)) if str(value or "").isdigit() else 0


def parse_inventory(doc: dict[str, Any]) -> WinInventory:
    volumes: dict[str, WinVolume] = {}
    for v in _list(doc.get("Volumes")):
        if not isinstance(v, dict) or _int(v.get("DriveType")) != DRIVE_FIXED:
            continue
        guid = str(v.get("DeviceID") or "")
        letter = str(v.get("DriveLetter") or "")
        free = v.get("FreeSpace")
        volumes[guid.lower()] = WinVolume(letter or guid, str(v.get("Label") or ""), str(v.get("FileSystem") or ""),
                                          _int(v.get("Capacity")), None if free is None else _int(free), guid)
    disks = {
        _int(d.get("Number")): WinDisk(_int(d.get("Number")), str(d.get("FriendlyName") or "").strip(),
                                       _int(d.get("Size")), PARTITION_STYLES.get(_int(d.get("PartitionStyle")), ""))
        for d in _list(doc.get("Disks")) if isinstance(d, dict)
    }
    placed: set[str] = set()
    for p in _list(doc.get("Partitions")):
        if not isinstance(p, dict):
            continue
        disk = disks.get(_int(p.get("DiskNumber")))
        for access in _list(p.get("AccessPaths")):
            vol = volumes.get(str(access).lower())
            if disk is not None and vol is not None and vol.guid_path.lower() not in placed:
                disk.volumes.append(vol)
                placed.add(vol.guid_path.lower())
    rest = [v for k, v in volumes.items() if k not in placed]
    return WinInventory(sorted(disks.values(), key=lambda d: d.number), rest)


def read_inventory(shell: PowerShell) -> WinInventory:
    rows = run_json(shell, SCRIPT, "listing volumes and disks")
    if len(rows) != 1:
        raise CimError(f"listing volumes and disks: expected one object, got {len(rows)}")
    return parse_inventory(rows[0])


__all__ = ["SCRIPT", "WinDisk", "WinInventory", "WinVolume", "parse_inventory", "read_inventory"]
