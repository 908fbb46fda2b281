"""The one storage interface every backend implements.

A store holds named, immutable objects grouped by file type, laid out as restic's default layout
(spec section 1): ``config``, ``keys/<id>``, ``locks/<id>``, ``snapshots/<id>``, ``index/<id>``
and ``data/<id[:2]>/<id>``. A store knows nothing of encryption or the repository format.

Contract (the shared suite in tests/store checks it for every backend):
- ``save`` is atomic: an object is either absent or complete; saving an existing name replaces it
  with identical bytes (names are content hashes) except ``config`` (refused by ``init``).
  ``save_file`` is the same for the contents of an open file, which it streams rather than
  reading into memory (prune builds packs in temporary files).
- ``load`` with ``offset``/``length`` is a ranged read; reading past the end returns what exists.
- ``list`` yields ``(name, size)`` for names that look like IDs; junk and temp files are skipped.
- ``remove`` of a missing object raises ``NotFoundError``.
- Errors are ``StoreError`` subclasses; foreign exceptions are mapped at the boundary.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, Protocol, runtime_checkable

_ID_RE = re.compile(r"^[0-9a-f]{64}$")


class FileType(Enum):
    """A kind of repository file; the value is its directory (or name, for ``config``)."""

    CONFIG = "config"
    KEY = "keys"
    LOCK = "locks"
    SNAPSHOT = "snapshots"
    INDEX = "index"
    PACK = "data"


@dataclass(frozen=True)
class Handle:
    """Names one object in a store."""

    type: FileType
    name: str = ""

    def path(self) -> str:
        """The object's relative path with forward slashes (restic's default layout)."""
        if self.type is FileType.CONFIG:
            return "config"
        if self.type is FileType.PACK:
            return f"data/{self.name[:2]}/{self.name}"
        return f"{self.type.value}/{self.name}"

    def __str__(self) -> str:
        return self.path()


def is_id(name: str) -> bool:
    """True for a 64-character lower-case hex name, the only names restic lists."""
    return bool(_ID_RE.match(name))


@runtime_checkable
class Store(Protocol):
    """Object storage for one repository."""

    @property
    def location(self) -> str:
        """Where the repository lives, for messages (never includes secrets)."""
        ...

    def create(self) -> None:
        """Prepare an empty repository location (directories, bucket); fine if it exists."""
        ...

    def save(self, h: Handle, data: bytes | memoryview) -> None:
        """Store ``data`` under ``h`` atomically."""
        ...

    def save_file(self, h: Handle, f: BinaryIO, size: int) -> None:
        """Store the ``size`` bytes of the file ``f`` (its whole content, from offset 0) atomically."""
        ...

    def load(self, h: Handle, offset: int = 0, length: int | None = None) -> bytes:
        """Read the object, or ``length`` bytes of it from ``offset``."""
        ...

    def load_view(self, h: Handle, offset: int, length: int) -> bytes | memoryview:
        """``length`` bytes from ``offset``, as ``load`` but possibly without a copy (a local
        store maps the file); short when the object is. For restores' pack ranges."""
        ...

    def stat(self, h: Handle) -> int:
        """The object's size in bytes; ``NotFoundError`` when it does not exist."""
        ...

    def list(self, t: FileType) -> Iterator[tuple[str, int]]:
        """Yield ``(name, size)`` of every object of type ``t``."""
        ...

    def remove(self, h: Handle) -> None:
        """Delete the object."""
        ...

    def close(self) -> None:
        """Release connections and handles."""
        ...


__all__ = ["FileType", "Handle", "Store", "is_id"]
