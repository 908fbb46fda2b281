"""What a file-system reader gives the snapshot browser: entries of a folder, a file's bytes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ..errors import SourceError


class FsReadError(SourceError):
    """The file system cannot be read here (corrupt, or a feature this reader does not know)."""


@dataclass(frozen=True)
class FsEntry:
    name: str
    type: str  # "dir", "file", "link", "other"
    size: int
    mtime_ns: int
    ref: int  # the reader's handle: an inode (ext4) or MFT record number (NTFS)


class FileSystemReader(Protocol):
    """A read-only view of one file system inside a byte source (a partition of an image)."""

    kind: str

    def root(self) -> int: ...

    def list(self, ref: int) -> list[FsEntry]: ...

    def read(self, ref: int) -> Iterator[bytes]: ...


def lookup(fs: FileSystemReader, parts: list[str]) -> FsEntry | None:
    """The entry at ``parts`` below the root (None: the root itself); ``FsReadError`` if absent."""
    entry: FsEntry | None = None
    ref = fs.root()
    for i, part in enumerate(parts):
        entry = next((e for e in fs.list(ref) if e.name == part), None)
        if entry is None:
            raise FsReadError(f"/{'/'.join(parts[: i + 1])} is not in this file system")
        if i < len(parts) - 1 and entry.type != "dir":
            raise FsReadError(f"/{'/'.join(parts[: i + 1])} is not a folder")
        ref = entry.ref
    return entry


__all__ = ["FileSystemReader", "FsEntry", "FsReadError", "lookup"]
