"""``DiskLayout``: what a disk holds, stored as JSON beside the image in every snapshot.

The JSON is a stable, versioned document (schema in ``docs/disk-layout.md``). Readers must ignore
keys they do not know; writers bump ``version`` only for incompatible changes. All offsets and
sizes are in bytes, relative to the start of the disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList

FORMAT = "e3backup-disk-layout"
VERSION = 1


@dataclass(frozen=True)
class Partition:
    """One partition table entry (or, with ``index`` 0, the whole device when it has no table)."""

    index: int
    start: int
    size: int
    type: str
    type_name: str = "unknown"
    guid: str | None = None
    name: str = ""
    filesystem: str | None = None
    bootable: bool = False
    attributes: int = 0

    @property
    def end(self) -> int:
        return self.start + self.size

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start,
            "size": self.size,
            "type": self.type,
            "type_name": self.type_name,
            "guid": self.guid,
            "name": self.name,
            "filesystem": self.filesystem,
            "bootable": self.bootable,
            "attributes": self.attributes,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Partition:
        return cls(
            index=int(d["index"]),
            start=int(d["start"]),
            size=int(d["size"]),
            type=str(d["type"]),
            type_name=str(d.get("type_name", "unknown")),
            guid=d.get("guid"),
            name=str(d.get("name", "")),
            filesystem=d.get("filesystem"),
            bootable=bool(d.get("bootable", False)),
            attributes=int(d.get("attributes", 0)),
        )

    def geometry(self) -> tuple[int, int, int, str, str | None]:
        return (self.index, self.start, self.size, self.type, self.guid)


@dataclass(frozen=True)
class DiskLayout:
    """The partition table of a disk, the file systems found, and (once planned) plan statistics.

    ``table`` is ``"gpt"``, ``"mbr"`` or ``"none"``. ``table_extents`` are the bytes holding the
    table itself (MBR, EBRs, both GPT copies). ``notes`` record what was repaired or guessed, e.g.
    a corrupt primary GPT read from its backup.
    """

    sector_size: int
    disk_size: int
    table: str
    partitions: tuple[Partition, ...] = ()
    disk_id: str | None = None
    table_extents: ExtentList = field(default_factory=ExtentList)
    notes: tuple[str, ...] = ()
    plan: dict[str, Any] | None = None

    def same_geometry(self, other: DiskLayout) -> bool:
        """Whether both describe the same disk shape (size, table, partition places and ids)."""
        return (
            self.sector_size == other.sector_size
            and self.disk_size == other.disk_size
            and self.table == other.table
            and self.disk_id == other.disk_id
            and [p.geometry() for p in self.partitions] == [p.geometry() for p in other.partitions]
        )

    def with_plan(self, stats: dict[str, Any]) -> DiskLayout:
        return replace(self, plan=stats)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "sector_size": self.sector_size,
            "disk_size": self.disk_size,
            "table": self.table,
            "disk_id": self.disk_id,
            "table_extents": self.table_extents.to_pairs(),
            "partitions": [p.to_json() for p in self.partitions],
            "notes": list(self.notes),
            "plan": self.plan,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DiskLayout:
        if d.get("format") != FORMAT:
            raise LayoutError(f"not a disk layout document (format {d.get('format')!r})")
        if int(d.get("version", 0)) > VERSION:
            raise LayoutError(f"disk layout version {d['version']} is newer than {VERSION}")
        return cls(
            sector_size=int(d["sector_size"]),
            disk_size=int(d["disk_size"]),
            table=str(d["table"]),
            partitions=tuple(Partition.from_json(p) for p in d.get("partitions", [])),
            disk_id=d.get("disk_id"),
            table_extents=ExtentList((int(o), int(n)) for o, n in d.get("table_extents", [])),
            notes=tuple(d.get("notes", [])),
            plan=d.get("plan"),
        )

    @classmethod
    def loads(cls, text: str) -> DiskLayout:
        return cls.from_json(json.loads(text))


__all__ = ["FORMAT", "VERSION", "DiskLayout", "Partition"]
