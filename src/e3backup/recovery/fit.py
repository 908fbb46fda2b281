"""Whether a disk can take the image: size, sector size, use; and what the restore must adjust.

A target at least as large as the source disk always fits; on a larger GPT disk the backup GPT
(header and entry array) is moved to the new end afterwards (``gpt.py``), as ``sgdisk -e`` would.
A smaller target fits when every partition (and the GPT backup behind the last one) fits and the
image's used extent (everything the backup read, the GPT backup copy at the old end left aside)
ends within the disk's whole chunks: the restore then writes only those chunks
(``size_limit``), zeroes the rest of the disk and writes the backup GPT at its end. Otherwise it
is refused, and the reason names the partition (or the data) that ends too late.
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
    move_gpt: bool = False
    """Another size than the source disk, with a GPT: the backup GPT goes to the disk's end."""
    size_limit: int | None = None
    """Smaller than the source disk: restore only this many bytes (whole chunks)."""


def used_end(layout: DiskLayout, device_size: int, plan: ExtentList) -> int:
    """The end of the last byte the image holds, the GPT backup copy at the old end left out."""
    tail = device_size - GPT_BACKUP_SECTORS * layout.sector_size if layout.table == "gpt" else device_size
    ends = [e.offset + e.length for e in plan if e.offset < tail]
    return min(max(ends, default=0), tail)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.2f} GiB"


def check_fit(layout: DiskLayout, device_size: int, chunk_size: int, plan: ExtentList, disk: DiskInfo) -> Fit:
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
    data = disk.describe_data()
    warning = f"{disk.path} holds data ({data}): all of it will be overwritten" if disk.holds_data else ""
    gpt = layout.table == "gpt"
    if disk.size >= device_size:
        return Fit(True, warning=warning, move_gpt=gpt and disk.size > device_size)
    need = used_end(layout, device_size, plan)
    room = disk.size - GPT_BACKUP_SECTORS * layout.sector_size if gpt else disk.size
    late = [p for p in layout.partitions if p.end > room]
    limit = disk.size // chunk_size * chunk_size
    if need > limit or late or layout.table == "none":
        what = f"partition {late[0].index} ends at {_size(late[0].end)}" if late else f"data up to {_size(need)}"
        return Fit(
            False,
            f"{disk.path} ({_size(disk.size)}) is smaller than the source disk ({_size(device_size)}) and too "
            f"small for the image's used extent: {what}",
        )
    return Fit(True, warning=warning, move_gpt=gpt, size_limit=limit)


__all__ = ["GPT_BACKUP_SECTORS", "Fit", "check_fit", "used_end"]
