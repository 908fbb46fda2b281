"""The Windows disk inventory from CIM, replayed as Windows PowerShell 5.1 prints
``@{Volumes=...; Disks=...; Partitions=...} | ConvertTo-Json -Depth 4 -Compress`` (classes:
Microsoft's "Win32_Volume class", "MSFT_Disk class" and "MSFT_Partition class"; enums as
integers: DriveType 3 = Local Disk, 5 = Compact Disc; PartitionStyle 1 = MBR, 2 = GPT)."""

from __future__ import annotations

import json

from e3backup.agent.disks import WindowsInventory, inventory_for, parse_lsblk
from e3backup.platform.windows.cim import ShellResult
from e3backup.platform.windows.inventory import SCRIPT

C_GUID = "\\\\?\\Volume{4c1b02c1-d990-11dc-99ae-806e6f6e6963}\\"
RECOVERY = "\\\\?\\Volume{9a3f5c8e-0000-4000-8000-000000000001}\\"
EFI = "\\\\?\\Volume{9a3f5c8e-0000-4000-8000-000000000002}\\"
DATA = "\\\\?\\Volume{9a3f5c8e-0000-4000-8000-000000000003}\\"
DVD = "\\\\?\\Volume{9a3f5c8e-0000-4000-8000-000000000004}\\"
POOL = "\\\\?\\Volume{9a3f5c8e-0000-4000-8000-000000000005}\\"

RECORDED = json.dumps({
    "Volumes": [
        {"DeviceID": C_GUID, "DriveLetter": "C:", "Label": None, "FileSystem": "NTFS",
         "Capacity": 511101681664, "FreeSpace": 201326592000, "DriveType": 3},
        {"DeviceID": RECOVERY, "DriveLetter": None, "Label": "Recovery", "FileSystem": "NTFS",
         "Capacity": 681570304, "FreeSpace": 103809024, "DriveType": 3},
        {"DeviceID": EFI, "DriveLetter": None, "Label": None, "FileSystem": "FAT32",
         "Capacity": 100663296, "FreeSpace": 69206016, "DriveType": 3},
        {"DeviceID": DATA, "DriveLetter": "D:", "Label": "Data", "FileSystem": "ReFS",
         "Capacity": 1000186310656, "FreeSpace": 900000000000, "DriveType": 3},
        {"DeviceID": DVD, "DriveLetter": "E:", "Label": None, "FileSystem": None,
         "Capacity": None, "FreeSpace": None, "DriveType": 5},
        {"DeviceID": POOL, "DriveLetter": "S:", "Label": "Pool", "FileSystem": "NTFS",
         "Capacity": 2000000000000, "FreeSpace": 1000000000000, "DriveType": 3},
    ],
    "Disks": [
        {"Number": 0, "FriendlyName": "Samsung SSD 970 EVO Plus 500GB", "Size": 500107862016, "PartitionStyle": 2},
        {"Number": 1, "FriendlyName": "WDC WD10EZEX-08WN4A0", "Size": 1000204886016, "PartitionStyle": 1},
    ],
    "Partitions": [
        {"DiskNumber": 0, "AccessPaths": [EFI]},
        {"DiskNumber": 0, "AccessPaths": None},
        {"DiskNumber": 0, "AccessPaths": ["C:\\", C_GUID]},
        {"DiskNumber": 0, "AccessPaths": [RECOVERY]},
        {"DiskNumber": 1, "AccessPaths": ["D:\\", DATA]},
    ],
}, separators=(",", ":")).replace("/", "\\/") + "\r\n"


class Recorded:
    def __init__(self) -> None:
        self.scripts: list[str] = []

    def run(self, script: str) -> ShellResult:
        self.scripts.append(script)
        return ShellResult(0, RECORDED, "")


def test_windows_inventory_in_the_linux_shape() -> None:
    shell = Recorded()
    report = WindowsInventory(shell).report()
    assert shell.scripts == [SCRIPT]
    assert [(d.path, d.model, d.size_bytes, d.partition_style) for d in report.disks] == [
        ("\\\\.\\PhysicalDrive0", "Samsung SSD 970 EVO Plus 500GB", 500107862016, "gpt"),
        ("\\\\.\\PhysicalDrive1", "WDC WD10EZEX-08WN4A0", 1000204886016, "mbr"),
    ]
    c = report.disks[0].volumes
    assert [(v.path, v.label, v.filesystem, v.size_bytes, v.free_bytes) for v in c] == [
        (EFI, "", "fat32", 100663296, 69206016),
        ("C:", "", "ntfs", 511101681664, 201326592000),
        (RECOVERY, "Recovery", "ntfs", 681570304, 103809024),
    ]
    assert [v.path for v in report.disks[1].volumes] == ["D:"]
    assert [v.path for v in report.volumes] == ["S:"]  # on no listed disk (a storage pool); no DVD
    linux = parse_lsblk(json.dumps({"blockdevices": [{"name": "sda", "path": "/dev/sda", "size": 1 << 30,
                                                      "type": "disk", "model": "QEMU", "children": []}]}))
    assert report.model_dump().keys() == linux.model_dump().keys()
    assert report.disks[0].model_dump().keys() == linux.disks[0].model_dump().keys()


def test_single_disk_machine_prints_bare_objects() -> None:
    """5.1 prints a one-element pipeline result as a bare object; ``@(...)`` in the script keeps
    arrays, but a hand-run query may not: both parse."""
    doc = {"Volumes": {"DeviceID": C_GUID, "DriveLetter": "C:", "FileSystem": "NTFS", "Capacity": 10,
                       "FreeSpace": 5, "DriveType": 3},
           "Disks": {"Number": 0, "FriendlyName": "Virtual Disk", "Size": 10, "PartitionStyle": 2},
           "Partitions": {"DiskNumber": 0, "AccessPaths": "C:\\"}}

    class One:
        def run(self, script: str) -> ShellResult:
            return ShellResult(0, json.dumps(doc), "")

    report = WindowsInventory(One()).report()
    assert [(d.path, [v.path for v in d.volumes]) for d in report.disks] == [("\\\\.\\PhysicalDrive0", [])]
    assert [v.path for v in report.volumes] == ["C:"]  # "C:\\" alone does not name the volume GUID path


def test_inventory_per_platform() -> None:
    assert type(inventory_for("win32")).__name__ == "WindowsInventory"
    assert type(inventory_for("linux")).__name__ == "LsblkInventory"
    assert type(inventory_for("darwin")).__name__ == "EmptyInventory"
