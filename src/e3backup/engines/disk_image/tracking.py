"""Change tracking in an image backup: the change map it gives, the verify read, the report.

Every incremental with tracking on (policy ``disk_image_cbt``, CLI ``--change-tracking auto``)
scans the file systems before reading (``sources.changetrack``) and narrows the plan to their
metadata plus the data of changed records; chunks outside keep the parent's blob IDs. The new
digests are stored with the snapshot under the tracking key ``disk`` (encrypted like every
blob). Every ``verify_every``-th incremental (policy ``disk_image_verify_every``) reads every
planned chunk anyway and compares: a chunk tracking would have reused whose content differs from
the parent's was written behind the file system's back (a direct device write) and is reported
with ``DISK_IMAGE_CHANGE_TRACKING_MISSED`` naming the byte ranges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...events import Event, EventCode
from ...repo.repository import Repository
from ...sources.changemap import ChunkDecisions, decide_chunks
from ...sources.changetrack import DiskTracking, Grid, Method, TrackingState, TrackingStateError, track_disk
from ...sources.device import BufferSource, CountingSource
from ...sources.extents import ExtentList
from ...sources.layout.model import DiskLayout
from ...sources.stored_image import ImageSnapshot
from .progress import EventSink

TRACKING_KEY = "disk"
MAX_RANGES_IN_EVENT = 100


@dataclass(frozen=True)
class TrackingPlan:
    """What change tracking decided for this run."""

    tracking: DiskTracking | None  # None: tracking off, or a change-map file given
    change_map: ExtentList | None  # narrows decide_chunks; None: read every planned chunk
    verify: bool = False  # read everything, then check what tracking would have reused
    verify_map: ExtentList | None = None  # in a verify run: the change map tracking gave
    off_reason: str = ""
    read_digests: dict[int, bytes] = field(default_factory=dict)  # filled by ``inspect_read``
    bytes_read: int = 0  # read by the scans and the metadata digests, before the chunks

    def inspect_read(self, index: int, chunk: memoryview) -> None:
        """Called with every chunk read, as it will be stored: digest its metadata (reader threads;
        each index is read once, and a dict item assignment is atomic)."""
        meta = self.tracking.meta if self.tracking is not None else None
        if meta is not None and (digest := meta.digest_chunk(index, chunk)) is not None:
            self.read_digests[index] = digest

    def stored(self) -> dict[str, bytes]:
        """Tracking files for the new snapshot (key -> data); none when no file system has digests."""
        if self.tracking is None or not self.tracking.state.partitions:
            return {}
        return {TRACKING_KEY: self.tracking.with_read_digests(self.read_digests).encode()}


def _parent_state(repo: Repository, parent: ImageSnapshot | None) -> tuple[TrackingState | None, str | None]:
    if parent is None:
        return None, None
    try:
        raw = parent.load_tracking(repo, TRACKING_KEY)
        return (TrackingState.decode(raw) if raw is not None else None), None
    except TrackingStateError as e:
        return None, f"the parent's change-tracking state is unreadable: {e}"


def plan_tracking(
    repo: Repository,
    dev: BufferSource,
    layout: DiskLayout,
    parent: ImageSnapshot | None,
    mismatch: str | None,
    enabled: bool,
    verify_every: int,
    sink: EventSink,
    started: float,
    grid: Grid | None = None,
) -> TrackingPlan:
    """Scan the file systems and build the change map (``mismatch``: why the parent cannot serve).

    ``started``: when the run began, before its snapshot was taken; stored as the digests' time
    (the ext4 scan's guard against same-tick writes compares with it). ``grid``: the chunk grid and
    read plan, so metadata chunks are read only when their metadata changed."""
    if not enabled:
        return TrackingPlan(None, None, off_reason="change tracking is off")
    state, problem = _parent_state(repo, parent)
    reason = mismatch or problem
    since = state.since_verify + 1 if state is not None and reason is None else 0
    verify = reason is None and verify_every > 0 and since >= verify_every
    counted = CountingSource(dev)
    tracking = track_disk(counted, layout, state, reason, started, 0 if verify else since, grid)
    if parent is not None:
        for event in tracking.unavailable_events():
            sink(event)
    if verify:
        return TrackingPlan(tracking, None, True, tracking.change_map, bytes_read=counted.bytes_read)
    return TrackingPlan(tracking, tracking.change_map, bytes_read=counted.bytes_read)


def report_rows(
    plan: TrackingPlan,
    layout: DiskLayout,
    planned: ExtentList,
    decisions: ChunkDecisions,
    change_map_file: bool,
    verify_every: int,
) -> list[dict[str, Any]]:
    """The summary's ``change_tracking`` list: per partition the method, why, and the bytes of it
    this run reads (its planned bytes inside the chunks decided ``read``)."""
    cs, size = decisions.chunk_size, decisions.device_size
    read = ExtentList((r.offset * cs, r.length * cs) for r in decisions.read).clamp(size) & planned
    by_index = {p.partition: p for p in plan.tracking.partitions} if plan.tracking else {}
    rows = []
    for part in layout.partitions:
        method, reason = Method.NONE.value, plan.off_reason
        if change_map_file:
            method, reason = Method.CHANGED_EXTENTS_FILE.value, decisions.ignored_reason or "--changed-extents"
        elif (pt := by_index.get(part.index)) is not None:
            method, reason = pt.method.value, pt.reason
            if plan.verify and pt.tracked:
                reason = f"verify read (1 in {verify_every} incrementals) of every used block; {pt.reason}"
        rows.append(
            {
                "partition": part.index,
                "method": method,
                "reason": reason,
                "bytes_planned": (read & ExtentList([(part.start, part.size)])).total_bytes,
            }
        )
    return rows


def summary_event(rows: Sequence[dict[str, Any]]) -> Event:
    parts = "; ".join(
        f"partition {r['partition']}: {r['method']}, {r['bytes_planned']} bytes to read ({r['reason']})" for r in rows
    )
    return Event(EventCode.DISK_IMAGE_CHANGE_TRACKING, f"change tracking: {parts}", details={"partitions": list(rows)})


def missed_ranges(
    plan: TrackingPlan,
    layout: DiskLayout,
    planned: ExtentList,
    parent: ImageSnapshot,
    content: Sequence[bytes],
) -> ExtentList:
    """In a verify run: the chunks tracking would have reused whose content changed, as bytes."""
    cs, size = parent.chunk_size, parent.device_size
    tracked = decide_chunks(cs, size, planned, layout, plan.verify_map, parent.parent)
    missed = [(i, 1) for r in tracked.reuse for i in range(r.offset, r.end) if content[i] != parent.content[i]]
    return ExtentList((e.offset * cs, e.length * cs) for e in ExtentList(missed)).clamp(size)


def missed_event(missed: ExtentList, layout: DiskLayout) -> Event:
    first = missed[0]
    parts = sorted({p.index for p in layout.partitions for e in missed if e.offset < p.end and p.start < e.end})
    return Event(
        EventCode.DISK_IMAGE_CHANGE_TRACKING_MISSED,
        f"verify read: {missed.total_bytes} bytes in {len(missed)} range(s) changed without the file system "
        f"recording it (first at offset {first.offset}, {first.length} bytes); they are stored correctly now",
        details={
            "bytes": missed.total_bytes,
            "ranges": missed.to_pairs()[:MAX_RANGES_IN_EVENT],
            "range_count": len(missed),
            "partitions": parts,
        },
    )


__all__ = [
    "TRACKING_KEY",
    "TrackingPlan",
    "missed_event",
    "missed_ranges",
    "plan_tracking",
    "report_rows",
    "summary_event",
]
