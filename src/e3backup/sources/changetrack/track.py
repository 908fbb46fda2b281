"""Change tracking of a whole disk: per partition, the bytes an incremental must read.

For every partition with a tracked file system (NTFS: MFT compare; ext2/3/4: inode-table
compare) the scan gives its metadata (always read) and the data of records that changed since
the parent's digests. Everything else of the disk (the partition table, gaps, partitions that
cannot be tracked) is in the change map whole, so ``decide_chunks`` reads it as before. A
partition falls back to a full read of its used blocks, with a reason, when its file system is
not tracked, its metadata cannot be read, the parent has no digests for it, or the file system
is not the one the digests describe (serial/UUID, size, cluster size...). When in doubt, read.
The scan runs before any data is read, so a change during a live read is seen next time.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from e3backup.events import Event, EventCode
from e3backup.sources.changetrack import ext4, ntfs
from e3backup.sources.changetrack.metachunks import MetaChunks
from e3backup.sources.changetrack.scan import FsScan, describe_identity_change
from e3backup.sources.changetrack.state import FsDigests, Identity, TrackingState
from e3backup.sources.device import ByteSource, Window
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout, Partition

READ_WHOLE_BY_DESIGN = frozenset({"efi-system", "ms-reserved", "bios-boot"})


class Method(StrEnum):
    NTFS_MFT = "ntfs-mft"
    NTFS_USN = "ntfs-usn"  # the USN journal named the changed records (checked against the digests)
    EXT4_INODES = "ext4-inodes"
    CHANGED_EXTENTS_FILE = "changed-extents-file"
    NONE = "none"


@dataclass(frozen=True)
class _Tracker:
    method: Method
    what: str  # "MFT" / "inode table", for reasons
    identity: Callable[[ByteSource], Identity]
    scan: Callable[[ByteSource, FsDigests | None], FsScan]


TRACKERS = {
    "ntfs": _Tracker(
        Method.NTFS_MFT,
        "MFT",
        ntfs.identity,
        lambda s, p: ntfs.scan(s, p.digests if p else None, p.journal if p else None),
    ),
    **{
        fs: _Tracker(
            Method.EXT4_INODES,
            "inode table",
            ext4.identity,
            lambda s, p: ext4.scan(s, p.digests if p else None, p.captured_at if p else None),
        )
        for fs in ("ext2", "ext3", "ext4")
    },
}


@dataclass(frozen=True)
class PartitionTracking:
    """How one partition is read this time. ``to_read`` (device offsets) is None: read it all."""

    partition: int
    start: int
    size: int
    filesystem: str | None
    method: Method
    reason: str
    to_read: ExtentList | None
    digests: FsDigests | None
    records: int = 0
    records_changed: int = 0
    by_design: bool = False
    scan_metadata: ExtentList | None = None  # the scan's always-read bytes (device offsets), if it ran
    changed: ExtentList | None = None  # tracked: the data of changed records (device offsets)

    @property
    def tracked(self) -> bool:
        return self.to_read is not None


@dataclass(frozen=True)
class DiskTracking:
    partitions: tuple[PartitionTracking, ...]
    change_map: ExtentList | None  # None: nothing narrows this run (no partition tracked)
    state: TrackingState  # to store with the new snapshot (chunk digests: those of reused chunks)
    meta: MetaChunks | None = None  # with a grid: the metadata ranges of each chunk

    def with_read_digests(self, digests: Mapping[int, bytes]) -> TrackingState:
        """The state to store, with the digests of the chunks this run read (from their stored
        bytes) added to those of the chunks it reused."""
        return replace(self.state, meta_chunks={**self.state.meta_chunks, **digests})

    def unavailable_events(self) -> list[Event]:
        return [
            Event(
                EventCode.DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE,
                f"partition {p.partition}: change tracking unavailable ({p.reason}); reading its used blocks",
                details={"partition": p.partition, "filesystem": p.filesystem, "reason": p.reason},
            )
            for p in self.partitions
            if not p.tracked and not p.by_design
        ]


def track_partition(
    source: ByteSource, part: Partition, parent: FsDigests | None, parent_reason: str | None, now: float
) -> PartitionTracking:
    """Scan one partition; compare with ``parent`` unless ``parent_reason`` says why not."""
    fs = part.filesystem
    base = (part.index, part.start, part.size, fs)
    if part.type_name in READ_WHOLE_BY_DESIGN:
        why = f"read whole by design ({part.type_name})"
        return PartitionTracking(*base, Method.NONE, why, None, None, by_design=True)
    tracker = TRACKERS.get(fs or "")
    if tracker is None:
        why = f"file system {fs or 'unknown'} has no change tracking"
        return PartitionTracking(*base, Method.NONE, why, None, None)
    window = Window(source, part.start, part.size)
    try:
        reason = parent_reason
        if reason is None:
            if parent is None:
                reason = "the parent image has no change-tracking digests for this partition"
            elif parent.filesystem != fs:
                reason = f"file system changed ({parent.filesystem} -> {fs})"
            else:
                changed = describe_identity_change(parent.identity, tracker.identity(window))
                if changed:
                    reason = f"file system identity changed ({changed})"
        scan = tracker.scan(window, parent if reason is None else None)
    except (LayoutError, ValueError, IndexError, struct.error, OSError) as e:
        # a damaged or unreadable structure: never guess, read the partition's used blocks
        return PartitionTracking(*base, Method.NONE, f"unreadable {tracker.what}: {e}", None, None)
    digests = FsDigests(part.index, fs or "", scan.identity, now, scan.digests, scan.journal)
    records = len(scan.digests)
    metadata = scan.metadata.shift(part.start)
    if reason is not None:
        return PartitionTracking(*base, Method.NONE, reason, None, digests, records, scan_metadata=metadata)
    what = "MFT records" if tracker.method is Method.NTFS_MFT else "inodes"
    method, why = tracker.method, f"{scan.records_changed} of {records} {what} changed"
    if scan.usn is not None:
        method, why = Method.NTFS_USN, f"{why} ({scan.usn})"
    elif scan.usn_unused is not None:
        why = f"{why} (USN journal not used: {scan.usn_unused})"
    return PartitionTracking(
        *base,
        method,
        why,
        scan.to_read.shift(part.start),
        digests,
        records,
        scan.records_changed,
        scan_metadata=metadata,
        changed=scan.changed.shift(part.start),
    )


@dataclass(frozen=True)
class Grid:
    """The chunk grid and read plan of this backup: with it, metadata is read per chunk only when
    its bytes changed (``metachunks.py``); without it, every metadata chunk is read."""

    chunk_size: int
    plan: ExtentList


def track_disk(
    source: ByteSource,
    layout: DiskLayout,
    parent: TrackingState | None,
    parent_reason: str | None,
    now: float,
    since_verify: int = 0,
    grid: Grid | None = None,
) -> DiskTracking:
    """Track every partition. ``parent_reason``: why the parent image cannot serve (or None)."""
    parts = []
    for p in layout.partitions:
        prev = parent.for_partition(p.index) if parent is not None else None
        if parent is None and parent_reason is None:
            why: str | None = "the parent image was made without change-tracking digests"
        else:
            why = parent_reason
        parts.append(track_partition(source, p, prev, why, now))
    tracked = [p for p in parts if p.to_read is not None]
    if grid is not None:
        return _track_chunks(source, layout, parts, parent, since_verify, grid)
    change_map = None
    if tracked:
        covered = ExtentList((p.start, p.size) for p in tracked)
        change_map = ExtentList([(0, source.size)]) - covered
        for t in tracked:
            change_map |= t.to_read or ExtentList()
        change_map = change_map.clamp(source.size)
    state = TrackingState(tuple(p.digests for p in parts if p.digests is not None), since_verify)
    return DiskTracking(tuple(parts), change_map, state)


def _track_chunks(
    source: ByteSource,
    layout: DiskLayout,
    parts: list[PartitionTracking],
    parent: TrackingState | None,
    since_verify: int,
    grid: Grid,
) -> DiskTracking:
    """The change map with per-chunk metadata digests: the always-read bytes (every scanned file
    system's metadata and the disk outside its partitions: partition tables, boot code) are
    digested per chunk, and a chunk is read for them only when its digest differs from the
    parent's. Partitions that are not tracked are read whole; changed records' data is read."""
    cs, size = grid.chunk_size, source.size
    always = ExtentList([(0, size)]) - ExtentList((p.start, p.size) for p in layout.partitions)
    for p in parts:
        if p.scan_metadata is not None:
            always |= p.scan_metadata
    meta = MetaChunks.of((always & grid.plan).clamp(size), cs)
    untracked = ExtentList((p.start, p.size) for p in parts if p.to_read is None)
    dirty = untracked.clamp(size)
    for p in parts:
        if p.changed is not None:
            dirty |= p.changed
    known = dict(parent.meta_chunks) if parent is not None and parent.chunk_size == cs else {}
    # chunks read anyway are digested from what the engine reads and stores, not here
    candidates = [i for i in sorted(meta.ranges) if i in known and not dirty.overlaps(i * cs, cs)]
    now_digests = meta.digest_source(source, candidates)
    same = {i: d for i, d in now_digests.items() if known[i] == d}
    stale = meta.chunks() - ExtentList((i, 1) for i in same)
    change_map = None
    if any(p.tracked for p in parts):
        change_map = (dirty | ExtentList((r.offset * cs, r.length * cs) for r in stale)).clamp(size)
    state = TrackingState(tuple(p.digests for p in parts if p.digests is not None), since_verify, cs, same)
    return DiskTracking(tuple(parts), change_map, state, meta)


__all__ = ["DiskTracking", "Grid", "Method", "PartitionTracking", "track_disk", "track_partition"]
