"""The source side of image backups: what to read of a disk, and reading it robustly.

device.py     open a block device or image file; preadv into caller buffers
layout/       GPT/MBR parsing, file-system probing, ext2/3/4 and NTFS allocation maps
plan.py       ReadPlan: metadata + used extents; everything else known zero
reader.py     DeviceReader: retries, best-effort zero-fill or strict failure
changemap.py  --changed-extents files and per-chunk read/reuse/zero decisions
snapshot/     LVM snapshots, the live device, auto selection
"""

from e3backup.sources.changemap import (
    ChunkAction,
    ChunkDecisions,
    ParentImage,
    decide_chunks,
    load_change_map,
    parse_change_map,
)
from e3backup.sources.device import ByteSource, Device, Window, open_device
from e3backup.sources.errors import ChangeMapError, LayoutError, ReadError, SnapshotError, SourceError
from e3backup.sources.extents import Extent, ExtentList
from e3backup.sources.layout import DiskLayout, Partition, read_layout
from e3backup.sources.plan import PartitionPlan, PlanMode, ReadPlan, build_read_plan, full_read_plan
from e3backup.sources.reader import DeviceReader, ReadPolicy, resolve_strict_read_errors
from e3backup.sources.snapshot import Snapshot, SnapshotProvider, select_provider

__all__ = [
    "ByteSource",
    "ChangeMapError",
    "ChunkAction",
    "ChunkDecisions",
    "Device",
    "DeviceReader",
    "DiskLayout",
    "Extent",
    "ExtentList",
    "LayoutError",
    "ParentImage",
    "Partition",
    "PartitionPlan",
    "PlanMode",
    "ReadError",
    "ReadPlan",
    "ReadPolicy",
    "Snapshot",
    "SnapshotError",
    "SnapshotProvider",
    "SourceError",
    "Window",
    "build_read_plan",
    "decide_chunks",
    "full_read_plan",
    "load_change_map",
    "open_device",
    "parse_change_map",
    "read_layout",
    "resolve_strict_read_errors",
    "select_provider",
]
