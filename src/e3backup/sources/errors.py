"""Errors of the source side (devices, layouts, plans, change maps, snapshots).

    E3Error
    └── SourceError                 reading what is to be backed up
        ├── ReadError               a device range could not be read (offset, length)
        ├── LayoutError             a partition table or file system that cannot be parsed
        ├── ChangeMapError          a change-map file that is malformed or out of range
        └── SnapshotError           creating or removing a snapshot failed

The engine turns a ``ReadError`` into ``DISK_IMAGE_FAILED``; a ``LayoutError`` inside the plan
builder becomes a ``DISK_IMAGE_READ_PLAN_FALLBACK`` and never escapes it.
"""

from __future__ import annotations

from e3backup.errors import E3Error


class SourceError(E3Error):
    pass


class ReadError(SourceError):
    """``length`` bytes at ``offset`` of ``path`` could not be read."""

    def __init__(self, path: str, offset: int, length: int, reason: str) -> None:
        super().__init__(f"{path}: cannot read {length} bytes at offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.length = length
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, int, int, str]]:
        return (type(self), (self.path, self.offset, self.length, self.reason))


class LayoutError(SourceError):
    pass


class ChangeMapError(SourceError):
    pass


class SnapshotError(SourceError):
    pass


__all__ = ["ChangeMapError", "LayoutError", "ReadError", "SnapshotError", "SourceError"]
