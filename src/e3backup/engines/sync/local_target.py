"""A local folder as the sync destination.

A file is written to a hidden temporary name beside its target and renamed over it, so a
crash or cancel never leaves a half-written file under the real name; its modification time is
set to the source's (nanoseconds). Folders left empty by deletions are removed.
"""

from __future__ import annotations

import os
import threading

from ...errors import StoreUnavailableError
from .source import SourceFile
from .target import READ_SIZE, DestFile, FileError, Pace, chunks, file_md5

TMP_PREFIX = ".e3sync-"


class LocalDestination:
    def __init__(self, path: str) -> None:
        self.root = os.path.abspath(path)

    @property
    def url(self) -> str:
        return self.root

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def listing(self) -> dict[str, DestFile]:
        out: dict[str, DestFile] = {}
        if not os.path.isdir(self.root):
            return out
        stack = [(self.root, "")]
        while stack:
            folder, base = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError as e:
                raise StoreUnavailableError(f"cannot list destination folder {folder}: {e.strerror}") from e
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, base + entry.name + "/"))
                elif entry.is_file(follow_symlinks=False) and not entry.name.startswith(TMP_PREFIX):
                    st = entry.stat(follow_symlinks=False)
                    out[base + entry.name] = DestFile(st.st_size, mtime_ns=st.st_mtime_ns)
        return out

    def known_mtime(self, key: str, dest: DestFile) -> int | None:
        return dest.mtime_ns

    def mtime_ns(self, key: str, dest: DestFile) -> int | None:
        return dest.mtime_ns

    def md5(self, key: str, dest: DestFile) -> str | None:
        return file_md5(self._path(key), dest.size, threading.Event())

    def remember(self, key: str, src: SourceFile, dest: DestFile) -> None:
        """Nothing to cache: the folder's listing carries the modification times."""

    def upload(self, key: str, src: SourceFile, pace: Pace, cancel: threading.Event) -> None:
        path = self._path(key)
        folder = os.path.dirname(path)
        if os.path.isdir(path) and not os.path.islink(path):
            raise FileError(src.path, f"a folder is in the way at {path}")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise StoreUnavailableError(f"cannot create destination folder {folder}: {e.strerror}") from e
        tmp = os.path.join(folder, f"{TMP_PREFIX}{threading.get_ident()}-{os.path.basename(path)}"[:250])
        try:
            with open(tmp, "wb") as out:
                for piece in chunks(src, READ_SIZE, cancel):
                    pace(len(piece))
                    out.write(piece)
            os.utime(tmp, ns=(src.mtime_ns, src.mtime_ns))
            os.replace(tmp, path)
        except BaseException as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(e, OSError):
                raise StoreUnavailableError(f"cannot write {path}: {e.strerror or e}") from e
            raise

    def delete(self, keys: list[str]) -> list[tuple[str, str]]:
        failed: list[tuple[str, str]] = []
        folders: set[str] = set()
        for key in keys:
            path = self._path(key)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                failed.append((key, e.strerror or str(e)))
                continue
            folders.add(os.path.dirname(path))
        for folder in sorted(folders, key=len, reverse=True):  # deepest first
            while folder.startswith(self.root + os.sep):
                try:
                    os.rmdir(folder)
                except OSError:
                    break  # not empty (or gone): stop climbing
                folder = os.path.dirname(folder)
        return failed

    def close(self) -> None:
        pass


__all__ = ["TMP_PREFIX", "LocalDestination"]
