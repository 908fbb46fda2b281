"""The rescue machine's disks, as the technician picks a target: model, size, partitions, use.

Disks come from ``/sys/block`` (whole disks and attached loop devices; RAM disks, zram, optical
drives and empty devices are left out). Partitions and file systems are read from the disk itself
with the same parser the image engine uses (``sources.layout``), so a loop device without
partition scanning shows its partitions too. ``in_use`` (mounted, swap, held) and ``read_only``
make a disk unusable as a target; ``holds_data`` (a partition table or a file system) earns a
warning: everything on it is overwritten.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import E3Error
from ..restore.target import device_user
from ..sources.device import open_device
from ..sources.layout.model import DiskLayout
from ..sources.layout.read import read_layout

SYS_BLOCK = Path("/sys/block")
_SKIP = ("ram", "zram", "sr", "fd", "dm-", "md", "nbd")


@dataclass(frozen=True)
class PartitionInfo:
    index: int
    start: int
    size: int
    filesystem: str | None
    name: str
    type_name: str


@dataclass(frozen=True)
class DiskInfo:
    path: str
    name: str
    model: str
    size: int
    sector_size: int
    read_only: bool
    in_use: str | None
    table: str
    partitions: tuple[PartitionInfo, ...] = field(default_factory=tuple)

    @property
    def holds_data(self) -> bool:
        return self.table != "none" or bool(self.partitions)

    def describe_data(self) -> str:
        """What is on the disk, for the overwrite warning."""
        if not self.holds_data:
            return "no partition table or file system found"
        parts = ", ".join(
            f"{p.index}: {p.filesystem or p.type_name} {p.name}".strip() + f" ({p.size >> 20} MiB)"
            for p in self.partitions
        )
        return f"{self.table.upper()} partition table" + (f" with partitions {parts}" if parts else "")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def disk_info(path: str) -> DiskInfo:
    """One disk, by device path (``E3Error`` when it is not a readable block device)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise E3Error(f"{path}: {e.strerror}") from None
    name = os.path.basename(os.path.realpath(path))
    sysdir = SYS_BLOCK / name
    model = _read(sysdir / "device" / "model")
    backing = _read(sysdir / "loop" / "backing_file")
    if not model and backing:
        model = f"loop device ({os.path.basename(backing)})"
    try:
        with open_device(path) as dev:
            layout: DiskLayout | None = read_layout(dev)
            size, sector = dev.size, dev.sector_size
    except OSError as e:
        raise E3Error(f"{path}: cannot read it ({e.strerror})") from None
    parts = tuple(
        PartitionInfo(p.index, p.start, p.size, p.filesystem, p.name, p.type_name)
        for p in (layout.partitions if layout else ())
    )
    return DiskInfo(
        path=path,
        name=name,
        model=model or "unknown model",
        size=size,
        sector_size=sector,
        read_only=_read(sysdir / "ro") == "1",
        in_use=_user(st),
        table=layout.table if layout else "none",
        partitions=parts,
    )


def list_disks() -> list[DiskInfo]:
    """Every disk a restore could go to (unusable ones included, with why), by name."""
    out = []
    for entry in sorted(SYS_BLOCK.iterdir()) if SYS_BLOCK.is_dir() else []:
        name = entry.name
        if name.startswith(_SKIP) or _read(entry / "size") in ("", "0"):
            continue
        path = f"/dev/{name}"
        if not os.path.exists(path):
            continue
        try:
            out.append(disk_info(path))
        except E3Error:
            continue  # vanished or unreadable: not a target
    return out




def _user(st: os.stat_result) -> str | None:
    """Who holds the device (the recovery console runs Linux; Windows has no device numbers)."""
    if sys.platform == "win32":
        return None
    else:
        return device_user(st.st_rdev)

__all__ = ["DiskInfo", "PartitionInfo", "disk_info", "list_disks"]
