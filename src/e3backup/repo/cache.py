"""A local cache of the repository files every command reads again (restic keeps the same).

Index files, snapshot files and packs of tree blobs are small next to the data and are read by
every backup, restore and check; on S3 each read is a request. They are immutable and named by
their content hash, so a cached copy is either right or detectably wrong: every use goes through
the same MAC and hash checks as a download, and a damaged entry is dropped and fetched again.
Nothing is ever trusted because it is cached.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..store.base import FileType

CACHED_TYPES = (FileType.INDEX, FileType.SNAPSHOT, FileType.PACK)


def default_cache_dir() -> Path:
    env = os.environ.get("E3BACKUP_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "e3backup" if xdg else Path.home() / ".cache" / "e3backup"


class Cache:
    def __init__(self, base: Path, repo_id: str) -> None:
        self.root = base / repo_id
        for t in CACHED_TYPES:
            (self.root / t.value).mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, t: FileType, name: str) -> Path:
        return self.root / t.value / name

    def get(self, t: FileType, name: str, offset: int = 0, length: int | None = None) -> bytes | None:
        try:
            with open(self._path(t, name), "rb") as f:
                if offset:
                    f.seek(offset)
                data = f.read() if length is None else f.read(length)
        except OSError:
            return None
        if length is not None and len(data) != length:
            self.remove(t, name)
            return None
        return data

    def has(self, t: FileType, name: str) -> bool:
        return self._path(t, name).exists()

    def put(self, t: FileType, name: str, data: bytes | memoryview) -> None:
        path = self._path(t, name)
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def remove(self, t: FileType, name: str) -> None:
        with contextlib.suppress(OSError):
            self._path(t, name).unlink()

    def keep_only(self, t: FileType, names: set[str]) -> None:
        """Drop cached files the repository no longer has (forgotten snapshots, old indexes)."""
        try:
            entries = os.listdir(self.root / t.value)
        except OSError:
            return
        for e in entries:
            if e not in names:
                self.remove(t, e)


__all__ = ["CACHED_TYPES", "Cache", "default_cache_dir"]
