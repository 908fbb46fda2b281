"""Change maps (``--changed-extents FILE``) and the per-chunk decision they allow.

A change map lists the bytes written since the parent image: a JSON list of ``[offset, length]``
pairs of non-negative integers inside the device. With a trustworthy parent (same device size,
chunk grid and partition layout) every grid chunk is decided as
- ``zero``:  no byte of the chunk is in the read plan (known zero);
- ``read``:  the chunk touches the change map, or the plan differs from the parent's plan
  inside it (bytes newly used, or freed and now zero), so the parent's chunk is not ours;
- ``reuse``: otherwise the parent's blob for the chunk is taken as is.
Without a usable parent every planned chunk is read; a change map given but unusable also emits
``DISK_IMAGE_CHANGE_MAP_IGNORED`` (never silently). Pure: no I/O except ``load_change_map``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from e3backup.events import Event, EventCode
from e3backup.sources.errors import ChangeMapError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout
from e3backup.sources.stored_image import ParentImage


def parse_change_map(doc: object, device_size: int, name: str = "change map") -> ExtentList:
    """Validate a decoded change-map document; errors name the offending entry."""
    if not isinstance(doc, list):
        raise ChangeMapError(f"{name}: expected a JSON list of [offset, length] pairs")
    pairs = []
    for i, entry in enumerate(doc):
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in entry)
        ):
            raise ChangeMapError(f"{name}: entry {i} {entry!r} is not a pair of integers")
        offset, length = entry
        if offset < 0 or length < 0:
            raise ChangeMapError(f"{name}: entry {i} {entry!r} has a negative offset or length")
        if offset + length > device_size:
            raise ChangeMapError(
                f"{name}: entry {i} {entry!r} ends at {offset + length}, past the device end {device_size}"
            )
        pairs.append((offset, length))
    return ExtentList(pairs)


def load_change_map(path: str | os.PathLike[str], device_size: int) -> ExtentList:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise ChangeMapError(f"{os.fspath(path)}: cannot read change map: {e}") from e
    return parse_change_map(doc, device_size, os.fspath(path))


class ChunkAction(StrEnum):
    READ = "read"
    REUSE = "reuse"
    ZERO = "zero"


@dataclass(frozen=True)
class ChunkDecisions:
    """Runs of chunk indexes per action; together they cover ``[0, chunk_count)`` once."""

    chunk_size: int
    device_size: int
    read: ExtentList
    reuse: ExtentList
    zero: ExtentList
    ignored_reason: str | None = None

    @property
    def chunk_count(self) -> int:
        return -(-self.device_size // self.chunk_size)

    def action(self, index: int) -> ChunkAction:
        for action, runs in self._lists():
            if runs.overlaps(index, 1):
                return action
        raise IndexError(f"chunk {index} is outside the device ({self.chunk_count} chunks)")

    def runs(self) -> Iterator[tuple[ChunkAction, int, int]]:
        """(action, first chunk, end chunk) in disk order."""
        items = sorted((r.offset, r.end, a) for a, runs in self._lists() for r in runs)
        for first, end, action in items:
            yield action, first, end

    def counts(self) -> dict[str, int]:
        return {a.value: runs.total_bytes for a, runs in self._lists()}

    def _lists(self) -> tuple[tuple[ChunkAction, ExtentList], ...]:
        return ((ChunkAction.READ, self.read), (ChunkAction.REUSE, self.reuse), (ChunkAction.ZERO, self.zero))


def parent_mismatch(
    device_size: int, chunk_size: int, layout: DiskLayout | None, parent: ParentImage | None
) -> str | None:
    """Why ``parent``'s chunks cannot stand in for this device's, or None when they can."""
    if parent is None:
        return "no parent image to reuse chunks from"
    if parent.device_size != device_size:
        return f"device size changed ({parent.device_size} -> {device_size} bytes)"
    if parent.chunk_size != chunk_size:
        return f"chunk size changed ({parent.chunk_size} -> {chunk_size} bytes)"
    if (parent.layout is None) != (layout is None) or (
        parent.layout is not None and layout is not None and not parent.layout.same_geometry(layout)
    ):
        return "partition layout changed"
    return None


def decide_chunks(
    chunk_size: int,
    device_size: int,
    plan: ExtentList,
    layout: DiskLayout | None = None,
    change_map: ExtentList | None = None,
    parent: ParentImage | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> ChunkDecisions:
    """Decide read / reuse / zero for every chunk of the grid (see the module docstring)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    every = ExtentList([(0, -(-device_size // chunk_size))])
    planned = plan.clamp(device_size).chunk_ranges(chunk_size)
    zero = every - planned
    if change_map is None:
        return ChunkDecisions(chunk_size, device_size, planned, ExtentList(), zero)
    reason = parent_mismatch(device_size, chunk_size, layout, parent)
    if reason is not None or parent is None:
        if on_event is not None:
            on_event(
                Event(
                    EventCode.DISK_IMAGE_CHANGE_MAP_IGNORED,
                    f"change map ignored, reading every planned chunk: {reason}",
                    details={"reason": reason},
                )
            )
        return ChunkDecisions(chunk_size, device_size, planned, ExtentList(), zero, reason)
    dirty = change_map.chunk_ranges(chunk_size) | (plan ^ parent.plan).clamp(device_size).chunk_ranges(chunk_size)
    read = planned & dirty
    return ChunkDecisions(chunk_size, device_size, read, planned - read, zero)


__all__ = [
    "ChunkAction",
    "ChunkDecisions",
    "ParentImage",
    "decide_chunks",
    "load_change_map",
    "parent_mismatch",
    "parse_change_map",
]
