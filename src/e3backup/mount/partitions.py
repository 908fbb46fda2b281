"""The partitions of a stored disk image, each read as a file system (ext2/3/4 or NTFS,
``sources.fsread``) through the image's blobs: nothing is mounted or staged.

One reader for every caller: the dashboard's browser and downloads (``server.services``), and
the agent restoring picked files of an image snapshot (``restore.image_files``). Paths are
``<partition>/<folder>/.../<name>``, the partition named ``<index>-<name or type>``. Names that
could escape or confuse (``..``, ``/``, NUL, empty) are left out, as in files snapshots.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ..repo.blob import BlobType
from ..repo.repository import Repository
from ..repo.snapshot import Snapshot
from ..sources.fsread import FileSystemReader, FsEntry, FsReadError, open_fs
from ..sources.layout.model import Partition
from ..sources.stored_image import load_image_snapshot
from .blobcache import BlobCache
from .content import ImageContent, Window
from .tree import safe_name

CACHE_BYTES = 64 << 20


class PathNotFound(FsReadError):
    """No such partition, folder or file in the image."""


class _Source:
    """A partition of the stored image as a ``ByteSource``."""

    def __init__(self, window: Window) -> None:
        self.window = window

    @property
    def size(self) -> int:
        return self.window.size

    def read_at(self, offset: int, length: int) -> bytes:
        return self.window.read(offset, length)


def label(p: Partition) -> str:
    text = p.name or (p.type_name if p.type_name != "unknown" else "") or p.type or "partition"
    return re.sub(r"[/\\\x00]", "_", f"{p.index}-{text}")


def split(path: str) -> list[str]:
    return [p for p in path.strip("/").split("/") if p]


@dataclass
class StoredImage:
    disk: ImageContent
    partitions: dict[str, Partition]

    @classmethod
    def load(cls, repo: Repository, snap: Snapshot, cache_bytes: int = CACHE_BYTES) -> StoredImage:
        """``NotAnImageError`` (an ``E3Error``) for a snapshot that is not a disk image."""
        img = load_image_snapshot(repo, snap)
        cache = BlobCache(lambda blob_id: repo.load_blob(BlobType.DATA, blob_id), cache_bytes)
        disk = ImageContent(img.content, img.device_size, img.chunk_size, img.zero_ids(), cache)
        return cls(disk, {label(p): p for p in img.layout.partitions})

    def fs(self, name: str) -> FileSystemReader:
        p = self.partitions.get(name)
        if p is None:
            raise PathNotFound(f"no partition {name} in this image")
        try:
            return open_fs(_Source(Window(self.disk, p.start, p.size)), p.filesystem)
        except FsReadError as e:
            raise FsReadError(f"partition {name}: {e}") from e


def entries(fs: FileSystemReader, ref: int) -> list[FsEntry]:
    return [e for e in fs.list(ref) if safe_name(e.name)]


def entry_at(img: StoredImage, parts: list[str]) -> tuple[FileSystemReader, FsEntry | None]:
    """The partition's file system and the entry at ``parts`` (None: the partition's root)."""
    fs = img.fs(parts[0])
    entry: FsEntry | None = None
    ref = fs.root()
    for i, part in enumerate(parts[1:], start=2):
        entry = next((e for e in entries(fs, ref) if e.name == part), None)
        if entry is None:
            raise PathNotFound(f"/{'/'.join(parts[:i])} is not in this image")
        ref = entry.ref
    return fs, entry


def walk(fs: FileSystemReader, entry: FsEntry | None, name: list[str]) -> Iterator[tuple[list[str], FsEntry | None]]:
    """``entry`` (None: the root) at ``name`` and, for a folder, everything below it, parents
    before children: (path parts, entry)."""
    yield name, entry
    if entry is not None and entry.type != "dir":
        return
    stack = [(name, entry.ref if entry else fs.root())]
    while stack:
        folder, ref = stack.pop()
        for child in entries(fs, ref):
            sub = [*folder, child.name]
            yield sub, child
            if child.type == "dir":
                stack.append((sub, child.ref))


__all__ = ["CACHE_BYTES", "PathNotFound", "StoredImage", "entries", "entry_at", "label", "split", "walk"]
