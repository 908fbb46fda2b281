"""A disk image snapshot read like a files snapshot: its partitions at the top, and in each the
folders and files of its ext2/3/4 or NTFS file system (``sources.fsread``), read through the
image's blobs in the repository: nothing is mounted, restored or staged on the server.

Paths are ``<partition>/<folder>/.../<name>``, the partition named ``<index>-<name or type>``.
Names that could escape or confuse are left out, as in files snapshots.
"""

from __future__ import annotations

from collections.abc import Iterator

from e3backup.errors import E3Error
from e3backup.mount import partitions
from e3backup.mount.partitions import PathNotFound, label
from e3backup.repo.repository import Repository
from e3backup.server.errors import Conflict, FieldError, NotFound
from e3backup.server.services.browse import PREVIEW_BYTES, SEARCH_LIMIT, SEARCH_MAX_NODES, Item, split
from e3backup.sources.fsread import FileSystemReader, FsEntry, FsReadError


class StoredImage(partitions.StoredImage):
    """``mount.partitions.StoredImage`` with the server's errors (404 for what is not there,
    409 for what cannot be read)."""

    @classmethod
    def of(cls, repo: Repository, snapshot_id: str, cache_bytes: int = partitions.CACHE_BYTES) -> StoredImage:
        try:
            img = partitions.StoredImage.load(repo, repo.load_snapshot(snapshot_id), cache_bytes)
        except E3Error as e:
            raise Conflict(f"snapshot {snapshot_id[:8]} is not a readable disk image: {e}") from e
        return cls(img.disk, img.partitions)

    def fs(self, name: str) -> FileSystemReader:
        try:
            return super().fs(name)
        except PathNotFound as e:
            raise NotFound(str(e)) from e
        except FsReadError as e:
            raise Conflict(str(e)) from e


def _item(parent: list[str], e: FsEntry) -> Item:
    return Item(e.name, "/".join([*parent, e.name]), e.type, e.size, e.mtime_ns)


def entries(fs: FileSystemReader, ref: int) -> list[FsEntry]:
    try:
        return partitions.entries(fs, ref)
    except FsReadError as e:
        raise Conflict(str(e)) from e


def entry_at(img: StoredImage, parts: list[str]) -> tuple[FileSystemReader, FsEntry | None]:
    """The partition's file system and the entry at ``parts`` (None: the partition's root)."""
    try:
        return partitions.entry_at(img, parts)
    except PathNotFound as e:
        raise NotFound(str(e)) from e
    except FsReadError as e:
        raise Conflict(str(e)) from e


def list_dir(repo: Repository, snapshot_id: str, path: str) -> list[Item]:
    img = StoredImage.of(repo, snapshot_id)
    parts = split(path)
    if not parts:
        return [Item(name, name, "dir", p.size, 0) for name, p in img.partitions.items()]
    fs, entry = entry_at(img, parts)
    if entry is not None and entry.type != "dir":
        raise FieldError("path", f"/{'/'.join(parts)} is a file, not a folder")
    items = [_item(parts, e) for e in entries(fs, entry.ref if entry else fs.root())]
    return sorted(items, key=lambda i: (i.type != "dir", i.name.lower(), i.name))


def file_entry(repo: Repository, snapshot_id: str, path: str) -> tuple[FileSystemReader, FsEntry]:
    parts = split(path)
    if len(parts) < 2:
        raise FieldError("path", f"/{'/'.join(parts)} is not a file")
    fs, entry = entry_at(StoredImage.of(repo, snapshot_id), parts)
    if entry is None or entry.type != "file":
        raise FieldError("path", f"/{'/'.join(parts)} is not a file")
    return fs, entry


def file_chunks(fs: FileSystemReader, entry: FsEntry) -> Iterator[bytes]:
    try:
        yield from fs.read(entry.ref)
    except FsReadError as e:
        raise Conflict(str(e)) from e


def preview(repo: Repository, snapshot_id: str, path: str, limit: int = PREVIEW_BYTES) -> tuple[str | None, bool]:
    fs, entry = file_entry(repo, snapshot_id, path)
    data = b""
    for chunk in file_chunks(fs, entry):
        data += chunk
        if len(data) >= limit:
            break
    head = data[:limit]
    if b"\0" in head:
        return None, False
    try:
        return head.decode("utf-8"), entry.size > limit
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:
            return None, False
        return head[: e.start].decode("utf-8"), True


def search(repo: Repository, snapshot_id: str, term: str, limit: int = SEARCH_LIMIT) -> tuple[list[Item], bool]:
    term = term.strip().lower()
    if not term:
        raise FieldError("q", "give part of a name to search for")
    img = StoredImage.of(repo, snapshot_id)
    found: list[Item] = []
    seen = 0
    for name in img.partitions:
        try:
            fs = img.fs(name)
        except Conflict:
            continue  # a partition without a readable file system
        stack: list[tuple[list[str], int]] = [([name], fs.root())]
        while stack:
            parent, ref = stack.pop()
            for e in entries(fs, ref):
                seen += 1
                if seen > SEARCH_MAX_NODES:
                    return found, True
                if term in e.name.lower():
                    found.append(_item(parent, e))
                    if len(found) >= limit:
                        return found, True
                if e.type == "dir":
                    stack.append(([*parent, e.name], e.ref))
    return found, False


__all__ = ["StoredImage", "entries", "entry_at", "file_chunks", "file_entry", "label", "list_dir", "preview",
           "search"]
