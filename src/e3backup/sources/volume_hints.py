"""Apply what the OS says about a snapshot's volume to a read plan (Windows, VSS).

- Used clusters from ``FSCTL_GET_VOLUME_BITMAP`` are cross-checked against the plan our own
  ``$Bitmap`` reader made from the same shadow copy: clusters Windows calls used that the plan
  would not read are added (nothing is lost) and said in ``DISK_IMAGE_BITMAP_MISMATCH``.
- Extents of the page file, hibernation file and swap file are taken out of the plan (they are
  stored as zeros; Windows recreates them) with ``DISK_IMAGE_FILES_SKIPPED``.
A full-mode plan reads everything and is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from e3backup.events import Event, EventCode
from e3backup.sources.device import ByteSource, RawDiskDevice
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout
from e3backup.sources.plan import PlanMode, ReadPlan
from e3backup.sources.snapshot.base import Snapshot


def check_layout(layout: DiskLayout, dev: ByteSource, on_event: Callable[[Event], None]) -> None:
    """A Windows disk: the partitions ``IOCTL_DISK_GET_DRIVE_LAYOUT_EX`` reports against the ones
    our parser read (the plan follows ours); a difference is ``DISK_IMAGE_LAYOUT_MISMATCH``."""
    if not isinstance(dev, RawDiskDevice):
        return
    theirs = dev.os_layout()
    if theirs is None:
        return
    ours_set = {(p.start, p.size) for p in layout.partitions if p.index}
    theirs_set = {(p.offset, p.length) for p in theirs.partitions}
    style = layout.table if layout.table in ("gpt", "mbr") else "raw"
    if ours_set == theirs_set and style == theirs.style:
        return
    on_event(Event(
        EventCode.DISK_IMAGE_LAYOUT_MISMATCH,
        f"Windows reports a {theirs.style} disk with {len(theirs_set)} partitions, the partition table read "
        f"gives {style} with {len(ours_set)}; imaging by the table",
        details={"windows": sorted(theirs_set), "table": sorted(ours_set), "windows_style": theirs.style,
                 "table_style": style},
    ))


def apply_volume_hints(plan: ReadPlan, snap: Snapshot, on_event: Callable[[Event], None]) -> ReadPlan:
    if plan.mode is not PlanMode.USED:
        return plan
    extents = plan.extents
    if snap.used_extents is not None:
        theirs = ExtentList(snap.used_extents).clamp(plan.device_size)
        missing = theirs.subtract(extents)
        if missing:
            on_event(Event(
                EventCode.DISK_IMAGE_BITMAP_MISMATCH,
                f"Windows reports {missing.total_bytes} bytes in use that the NTFS bitmap reader did not "
                f"plan ({len(missing)} ranges, first at offset {missing[0].offset}); they are read too",
                details={"missing_bytes": missing.total_bytes, "missing_ranges": len(missing),
                         "first": missing.to_pairs()[:8], "device": snap.device_path},
            ))
            extents = extents.union(missing)
    if snap.skip_extents:
        skip = ExtentList(snap.skip_extents).clamp(plan.device_size)
        skipped = extents.intersection(skip).total_bytes
        extents = extents.subtract(skip)
        on_event(Event(
            EventCode.DISK_IMAGE_FILES_SKIPPED,
            f"not imaging {', '.join(snap.skipped_files)}: {skipped} bytes stored as zeros",
            details={"files": list(snap.skipped_files), "bytes": skipped},
        ))
    return plan if extents == plan.extents else replace(plan, extents=extents)


__all__ = ["apply_volume_hints", "check_layout"]
