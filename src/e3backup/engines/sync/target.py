"""The destination side, as the sync needs it: list, judge, upload, delete.

Two destinations implement it: a bucket (``s3_target``) and a local folder (``local_target``).
Reading a source file is the engine's only local I/O during a transfer; a failure there is a
``FileError`` (that file is skipped and named), while a failure of the destination is a
``StoreError`` (the run stops: the next files would fail the same way).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ...errors import Cancelled, E3Error
from .source import SourceFile

#: Called with the byte count of each piece before it is sent: bandwidth limit and progress.
Pace = Callable[[int], None]

READ_SIZE = 1 << 20


class FileError(E3Error):
    """One file could not be synced (unreadable, or in the way); the message names it."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class DestFile:
    """One file of the destination as its listing shows it."""

    size: int
    etag: str = ""  # S3: the listing's ETag (content MD5 for single-part uploads)
    mtime_ns: int | None = None  # known from the listing (a local folder), else asked for


class Destination(Protocol):
    @property
    def url(self) -> str: ...

    def listing(self) -> dict[str, DestFile]:
        """Every file under the destination, by key."""

    def known_mtime(self, key: str, dest: DestFile) -> int | None:
        """``mtime_ns`` if it is known without a request (the listing, the cache), else None."""

    def mtime_ns(self, key: str, dest: DestFile) -> int | None:
        """The source modification time the destination recorded for ``key`` (None: unknown)."""

    def md5(self, key: str, dest: DestFile) -> str | None:
        """The MD5 (hex) of ``key``'s content, if the destination can tell without a download."""

    def remember(self, key: str, src: SourceFile, dest: DestFile) -> None:
        """``key`` was judged the same as ``src``: note it, so the next run judges it cheaply."""

    def upload(self, key: str, src: SourceFile, pace: Pace, cancel: threading.Event) -> None:
        """Copy ``src`` to ``key``, keeping its modification time."""

    def delete(self, keys: list[str]) -> list[tuple[str, str]]:
        """Delete ``keys``; returns (key, reason) for those that could not be deleted."""

    def close(self) -> None: ...


def open_source(src: SourceFile) -> BinaryIO:
    try:
        return open(src.path, "rb")
    except OSError as e:
        raise FileError(src.path, e.strerror or str(e)) from e


def read_exactly(f: BinaryIO, src: SourceFile, n: int) -> bytes:
    """``n`` bytes of ``src``, or a ``FileError`` (read error, or the file shrank)."""
    try:
        data = f.read(n)
    except OSError as e:
        raise FileError(src.path, e.strerror or str(e)) from e
    if len(data) != n:
        raise FileError(src.path, "the file shrank while it was being synced")
    return data


def chunks(src: SourceFile, size: int, cancel: threading.Event) -> Iterator[bytes]:
    """The file's content in pieces of ``size`` bytes (the last one shorter)."""
    with open_source(src) as f:
        left = src.size
        while left > 0:
            if cancel.is_set():
                raise Cancelled("sync cancelled")
            n = min(size, left)
            yield read_exactly(f, src, n)
            left -= n


def file_md5(path: str, size: int, cancel: threading.Event) -> str:
    h = hashlib.md5(usedforsecurity=False)
    for piece in chunks(SourceFile(path, size, 0), READ_SIZE, cancel):
        h.update(piece)
    return h.hexdigest()


__all__ = [
    "DestFile",
    "Destination",
    "FileError",
    "Pace",
    "chunks",
    "file_md5",
    "open_source",
    "read_exactly",
]
