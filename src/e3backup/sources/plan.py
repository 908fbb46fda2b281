"""The read plan: which bytes of a disk an image backup reads; everything else is known zero.

A plan in ``used`` mode is the union of
- disk metadata: the first MiB (MBR/protective MBR, primary GPT, boot loaders) and the partition
  table's own extents (EBRs, the GPT backup entries and header at the end of the disk);
- per partition, the used bytes its file system's allocation bitmap reports (ext2/3/4, NTFS);
  those maps include the file systems' own boot sectors and backups;
- partitions whose contents cannot be mapped, in full: an unknown or damaged file system gives a
  ``DISK_IMAGE_READ_PLAN_FALLBACK`` event; the few small types that are read whole by design
  (EFI system, Microsoft reserved, BIOS boot) do not.
A disk without a readable partition table is read whole (with the event), unless a known file
system sits directly on it (a logical volume, a bare partition device). ``full`` mode reads the
whole device. Every extent is clamped to the device end. The maps must come from the same device
handle that is then read (the snapshot), never from the live file system.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from e3backup.events import Event, EventCode
from e3backup.sources.device import ByteSource, Window
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout import ext4, ntfs
from e3backup.sources.layout.model import DiskLayout, Partition
from e3backup.sources.layout.read import read_layout

HEAD_BYTES = 1 << 20
READ_WHOLE_BY_DESIGN = frozenset({"efi-system", "ms-reserved", "bios-boot"})

UsedExtentsReader = Callable[[ByteSource], ExtentList]
ALLOCATION_READERS: dict[str, tuple[str, UsedExtentsReader]] = {
    "ext2": ("ext-bitmap", ext4.used_extents),
    "ext3": ("ext-bitmap", ext4.used_extents),
    "ext4": ("ext-bitmap", ext4.used_extents),
    "ntfs": ("ntfs-bitmap", ntfs.used_extents),
}


class PlanMode(StrEnum):
    USED = "used"
    FULL = "full"


@dataclass(frozen=True)
class PartitionPlan:
    """What is read of one partition and how that was decided (``source``)."""

    index: int
    start: int
    size: int
    filesystem: str | None
    source: str
    extents: ExtentList
    fallback_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start,
            "size": self.size,
            "filesystem": self.filesystem,
            "source": self.source,
            "planned_bytes": self.extents.total_bytes,
            "fallback_reason": self.fallback_reason,
        }


@dataclass(frozen=True)
class ReadPlan:
    device_size: int
    mode: PlanMode
    extents: ExtentList
    metadata: ExtentList
    partitions: tuple[PartitionPlan, ...] = ()
    fallback_reasons: tuple[str, ...] = ()

    @property
    def planned_bytes(self) -> int:
        return self.extents.total_bytes

    def known_zero(self) -> ExtentList:
        return self.extents.complement(self.device_size)

    def stats(self) -> dict[str, Any]:
        """Plan statistics for the layout JSON (``DiskLayout.with_plan``)."""
        return {
            "mode": self.mode.value,
            "device_size": self.device_size,
            "planned_bytes": self.planned_bytes,
            "metadata_bytes": self.metadata.total_bytes,
            "known_zero_bytes": self.device_size - self.planned_bytes,
            "extent_count": len(self.extents),
            "partitions": [p.to_json() for p in self.partitions],
            "fallback_reasons": list(self.fallback_reasons),
        }

    def to_json(self) -> dict[str, Any]:
        """The plan itself (stats plus extents), to keep beside an image as the next run's parent."""
        return {**self.stats(), "extents": self.extents.to_pairs()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReadPlan:
        return cls(
            device_size=int(d["device_size"]),
            mode=PlanMode(d["mode"]),
            extents=ExtentList((int(o), int(n)) for o, n in d["extents"]),
            metadata=ExtentList(),
            fallback_reasons=tuple(d.get("fallback_reasons", [])),
        )


def full_read_plan(device_size: int) -> ReadPlan:
    """The whole device (``--read-plan full``)."""
    whole = ExtentList([(0, device_size)])
    return ReadPlan(device_size, PlanMode.FULL, whole, ExtentList())


def build_read_plan(
    source: ByteSource,
    layout: DiskLayout | None = None,
    mode: PlanMode | str = PlanMode.USED,
    on_event: Callable[[Event], None] | None = None,
) -> ReadPlan:
    """Plan the reads of ``source`` (the snapshot device that will be read)."""
    size = source.size
    if PlanMode(mode) is PlanMode.FULL:
        return full_read_plan(size)
    emit = on_event or (lambda _e: None)
    layout = layout or read_layout(source)
    if not layout.partitions:
        reason = "no readable partition table" + (f" ({'; '.join(layout.notes)})" if layout.notes else "")
        emit(_fallback_event(reason, None, size))
        plan = full_read_plan(size)
        return ReadPlan(size, PlanMode.USED, plan.extents, ExtentList(), (), (reason,))
    metadata = ExtentList([(0, HEAD_BYTES)]) | layout.table_extents
    if layout.table == "none":
        metadata = ExtentList()  # a bare file system: its own map covers its head
    metadata = metadata.clamp(size)
    parts, reasons = [], []
    for p in layout.partitions:
        pp = _plan_partition(source, p)
        parts.append(pp)
        if pp.fallback_reason:
            reasons.append(f"partition {p.index}: {pp.fallback_reason}")
            emit(_fallback_event(pp.fallback_reason, p, pp.extents.total_bytes))
    extents = metadata
    for pp in parts:
        extents = extents | pp.extents
    return ReadPlan(size, PlanMode.USED, extents.clamp(size), metadata, tuple(parts), tuple(reasons))


def _plan_partition(source: ByteSource, p: Partition) -> PartitionPlan:
    whole = ExtentList([(p.start, p.size)]).clamp(source.size)
    reader = ALLOCATION_READERS.get(p.filesystem or "")
    if reader is not None:
        name, used_extents = reader
        try:
            used = used_extents(Window(source, p.start, p.size))
            return PartitionPlan(p.index, p.start, p.size, p.filesystem, name, used.shift(p.start) & whole)
        except (LayoutError, ValueError, IndexError) as e:
            reason = f"{p.filesystem} allocation map unreadable: {e}"
    elif p.type_name in READ_WHOLE_BY_DESIGN:
        return PartitionPlan(p.index, p.start, p.size, p.filesystem, "whole-by-type", whole)
    else:
        reason = f"file system {p.filesystem or 'unknown'} has no allocation map reader"
    return PartitionPlan(p.index, p.start, p.size, p.filesystem, "whole", whole, reason)


def _fallback_event(reason: str, p: Partition | None, planned: int) -> Event:
    where = f"partition {p.index}" if p else "the whole disk"
    details: dict[str, Any] = {"reason": reason, "planned_bytes": planned}
    if p is not None:
        details |= {"partition": p.index, "filesystem": p.filesystem, "start": p.start, "size": p.size}
    return Event(
        EventCode.DISK_IMAGE_READ_PLAN_FALLBACK, f"reading {where} in full: {reason}", details=details
    )


__all__ = [
    "ALLOCATION_READERS",
    "HEAD_BYTES",
    "PartitionPlan",
    "PlanMode",
    "ReadPlan",
    "build_read_plan",
    "full_read_plan",
]
