"""Whether a disk can take the image: size, sector size, use; and what the restore must adjust.

A target at least as large as the source disk always fits; on a larger GPT disk the backup GPT
(header and entry array) is moved to the new end afterwards (``gpt.py``), as ``sgdisk -e`` would.
A smaller target is refused when the image's used extent (everything the backup read, the GPT
backup copy at the old end left aside) does not fit, and the reason names the partition that
ends too late.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sources.extents import ExtentList
from ..sources.layout.model import DiskLayout
from .disks import DiskInfo

GPT_BACKUP_SECTORS = 33  # the backup header and a 128-entry array, at the end of the disk


@dataclass(frozen=True)
class Fit:
    ok: bool
    reason: str = ""
    """Why the disk is refused ("" when it fits)."""
    warning: str = ""
    """What is lost by writing it (its data), for the technician to confirm."""
    grow: bool = False
    """Larger than the source disk with a GPT: the backup GPT goes to the new end."""


def used_end(layout: DiskLayout, device_size: int, plan: ExtentList) -> int:
    """The end of the last byte the image holds, the GPT backup copy at the old end left out."""
    tail = device_size - GPT_BACKUP_SECTORS * layout.sector_size if layout.table == "gpt" else device_size
    ends = [e.offset + e.length for e in plan if e.offset < tail]
    return min(max(ends, default=0), tail)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.2f} GiB"


def check_fit(layout: DiskLayout, device_size: int, plan: ExtentList, disk: DiskInfo) -> Fit:
    if disk.read_only:
        return Fit(False, f"{disk.path} is read-only")
    if disk.in_use:
        return Fit(False, f"{disk.path} is in use ({disk.in_use}): unmount it first")
    if layout.table != "none" and disk.sector_size != layout.sector_size:
        return Fit(
            False,
            f"{disk.path} has {disk.sector_size}-byte sectors, the image's partition table uses "
            f"{layout.sector_size}-byte sectors",
        )
    warning = (
        f"{disk.path} holds data ({disk.describe_data()}): all of it will be overwritten" if disk.holds_data else ""
    )
    if disk.size >= device_size:
        return Fit(True, warning=warning, grow=disk.size > device_size and layout.table == "gpt")
    need = used_end(layout, device_size, plan)
    late = [p for p in layout.partitions if p.end > disk.size - GPT_BACKUP_SECTORS * layout.sector_size]
    if need > disk.size or late:
        what = f"partition {late[0].index} ends at {_size(late[0].end)}" if late else f"data up to {_size(need)}"
        return Fit(
            False,
            f"{disk.path} ({_size(disk.size)}) is smaller than the source disk ({_size(device_size)}) and too "
            f"small for the image's used extent: {what}",
        )
    return Fit(
        False,
        f"{disk.path} ({_size(disk.size)}) is smaller than the source disk ({_size(device_size)}); every "
        "partition would fit, but restoring to a smaller disk is not supported yet: use a disk of at least "
        f"{_size(device_size)}",
    )


__all__ = ["GPT_BACKUP_SECTORS", "Fit", "check_fit", "used_end"]
