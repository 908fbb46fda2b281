"""A repository in a local directory (restic's local backend).

Writes go to a temporary name in the target directory, are fsynced, renamed into place and the
directory is fsynced, so a crash leaves either nothing or the complete file. Saved files are made
read-only, as restic does.
"""

from __future__ import annotations

import builtins
import errno
import mmap
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..crashpoints import crash_point
from ..errors import AlreadyExistsError, NotFoundError, StoreError, StoreUnavailableError
from ..platform.compat import READ_FLAGS, pread
from .base import FileType, Handle, is_id
from .temporaries import TMP_MARK, Temporary, parse_temporary, temporary_name

_DIR_MODE = 0o700
_FILE_MODE = 0o400


class LocalStore:
    """``Store`` on a local file system path."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._made_dirs: set[str] = set()

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, h: Handle) -> Path:
        return self.root / h.path()

    def create(self) -> None:
        try:
            self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            for t in FileType:
                if t is not FileType.CONFIG:
                    (self.root / t.value).mkdir(mode=_DIR_MODE, exist_ok=True)
        except OSError as e:
            raise _map(e, str(self.root)) from e

    def _ensure_dir(self, d: Path) -> None:
        key = str(d)
        if key in self._made_dirs:
            return
        d.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        self._made_dirs.add(key)

    def save(self, h: Handle, data: bytes | memoryview) -> None:
        def write(fd: int) -> None:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]

        self._save_atomic(h, write)

    def save_file(self, h: Handle, f: BinaryIO, size: int) -> None:
        self._save_atomic(h, lambda fd: _copy_file(f.fileno(), fd, size))

    def _save_atomic(self, h: Handle, write: Callable[[int], None]) -> None:
        path = self._path(h)
        tmp = path.with_name(temporary_name(path.name))
        try:
            self._ensure_dir(path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, _FILE_MODE)
            crash_point(f"save-{h.type.value}-tmp")
            os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            crash_point(f"save-{h.type.value}")
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise _map(e, str(self._path(h))) from e

    def load(self, h: Handle, offset: int = 0, length: int | None = None) -> bytes:
        try:
            with open(self._path(h), "rb", buffering=0) as f:
                if offset:
                    f.seek(offset)
                if length is None:
                    return f.read()
                return _read_exact_or_eof(f, length)
        except OSError as e:
            raise _map(e, str(self._path(h))) from e

    def load_view(self, h: Handle, offset: int, length: int) -> memoryview:
        """Like ``load`` but mapped, not copied: a restore decrypts straight from the page cache.

        Packs are written once under a temporary name and renamed, never changed in place, so
        the mapping cannot shrink under us; the range is clipped to the file's size first (a
        truncated pack gives a short view, as ``load`` gives short bytes).
        """
        try:
            fd = os.open(self._path(h), READ_FLAGS)
        except OSError as e:
            raise _map(e, str(self._path(h))) from e
        try:
            size = os.fstat(fd).st_size
            end = min(size, offset + length)
            if end - offset < MAP_MIN or sys.platform == "win32":  # Windows: a mapped pack could not be deleted
                return memoryview(pread(fd, max(0, end - offset), offset))
            start = offset - offset % mmap.ALLOCATIONGRANULARITY
            # MAP_POPULATE maps every page in the mmap call itself, which runs without the GIL;
            # otherwise the first reader (the MAC, which holds the GIL) takes the page faults
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            m = mmap.mmap(fd, end - start, flags=flags, prot=mmap.PROT_READ, offset=start)
            return memoryview(m)[offset - start :]
        except OSError as e:
            raise _map(e, str(self._path(h))) from e
        finally:
            os.close(fd)

    def stat(self, h: Handle) -> int:
        try:
            return self._path(h).stat().st_size
        except OSError as e:
            raise _map(e, str(self._path(h))) from e

    def list(self, t: FileType) -> Iterator[tuple[str, int]]:
        base = self.root / t.value
        if t is FileType.CONFIG:
            try:
                yield "config", base.stat().st_size
            except FileNotFoundError:
                return
            return
        dirs = [base]
        if t is FileType.PACK:
            try:
                dirs = sorted(p for p in base.iterdir() if p.is_dir())
            except FileNotFoundError:
                return
            except OSError as e:
                raise _map(e, str(base)) from e
        for d in dirs:
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _map(e, str(d)) from e
            for ent in entries:
                if is_id(ent.name) and ent.is_file(follow_symlinks=False):
                    try:
                        yield ent.name, ent.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue

    owners_known = True  # temporary names carry host and PID (``temporaries``)

    def temporaries(self) -> builtins.list[Temporary]:
        """Temporary files of saves in progress or of killed processes, anywhere in the layout."""
        dirs = [self.root] + [self.root / t.value for t in FileType if t is not FileType.CONFIG]
        try:
            dirs += sorted(p for p in (self.root / FileType.PACK.value).iterdir() if p.is_dir())
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _map(e, str(self.root / FileType.PACK.value)) from e
        found = []
        for d in dirs:
            try:
                entries = [e for e in os.scandir(d) if TMP_MARK in e.name]
            except FileNotFoundError:
                continue
            except OSError as e:
                raise _map(e, str(d)) from e
            for ent in entries:
                try:
                    size = ent.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # renamed into place meanwhile
                t = parse_temporary(os.path.relpath(ent.path, self.root), size)
                if t is not None:
                    found.append(t)
        return found

    def remove_temporary(self, t: Temporary) -> None:
        try:
            (self.root / t.path).unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise _map(e, str(self.root / t.path)) from e

    def remove(self, h: Handle) -> None:
        path = self._path(h)
        crash_point(f"remove-{h.type.value}")
        try:
            os.chmod(path, 0o600)
            path.unlink()
        except OSError as e:
            raise _map(e, str(self._path(h))) from e

    def close(self) -> None:
        pass


MAP_MIN = 256 * 1024
"""Smaller ranges are read: mapping costs more than copying a few pages."""


def _copy_file(src: int, dst: int, size: int) -> None:
    """Copy the first ``size`` bytes of ``src`` in the kernel (sendfile): no buffer in this process."""
    offset = 0
    try:
        if sys.platform == "win32":
            raise OSError(errno.ENOSYS, "no sendfile on Windows")
        while offset < size:
            n = os.sendfile(dst, src, offset, size - offset)
            if n == 0:
                raise OSError(errno.EIO, f"source file ends at {offset} of {size} bytes")
            offset += n
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP):
            raise
        while offset < size:  # no file-to-file sendfile here: copy through a small buffer
            chunk = pread(src, min(size - offset, 1 << 20), offset)
            if not chunk:
                raise OSError(errno.EIO, f"source file ends at {offset} of {size} bytes") from e
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view) :]
            offset += len(chunk)


def _read_exact_or_eof(f: object, length: int) -> bytes:
    parts: list[bytes] = []
    remaining = length
    while remaining > 0:
        chunk = f.read(remaining)  # type: ignore[attr-defined]
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _map(e: OSError, what: str) -> StoreError:
    if e.errno == errno.ENOENT:
        return NotFoundError(f"{what}: not found")
    if e.errno == errno.EEXIST:
        return AlreadyExistsError(f"{what}: already exists")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreUnavailableError(f"cannot write {what}: the repository's file system is full ({e.strerror})")
    if e.errno == errno.EROFS:
        return StoreUnavailableError(f"cannot write {what}: the repository's file system is read-only")
    return StoreUnavailableError(f"{what}: {e.strerror or e}")


def is_local(store: object) -> bool:
    """Whether reads from ``store`` (possibly behind a rate limiter) are local file reads: a
    restore then needs no read-ahead to hide the network's latency."""
    inner = getattr(store, "inner", None)
    return isinstance(store, LocalStore) or (inner is not None and is_local(inner))


__all__ = ["LocalStore", "is_local"]
