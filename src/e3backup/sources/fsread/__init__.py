"""File systems read from a byte source without mounting: ext2/3/4 and NTFS (``open_fs``).

Used by the dashboard to browse the partitions of disk image snapshots: the source is a window
onto the image as stored in the repository, so nothing is mounted or restored on the server.
"""

from __future__ import annotations

from ..device import ByteSource
from ..errors import LayoutError
from .ext4 import Ext4Reader
from .model import FileSystemReader, FsEntry, FsReadError, lookup
from .ntfs import NtfsReader


def open_fs(source: ByteSource, hint: str | None = None) -> FileSystemReader:
    """The reader for the file system in ``source`` (``hint``: the layout's file system name)."""
    order = (NtfsReader, Ext4Reader) if (hint or "").lower() == "ntfs" else (Ext4Reader, NtfsReader)
    for reader in order:
        try:
            return reader(source)
        except (FsReadError, LayoutError):
            continue
    raise FsReadError("no ext2/3/4 or NTFS file system found")


__all__ = ["Ext4Reader", "FileSystemReader", "FsEntry", "FsReadError", "NtfsReader", "lookup", "open_fs"]
