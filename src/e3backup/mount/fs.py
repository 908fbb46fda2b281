"""The FUSE adapter (mfusepy, high-level libfuse API): read-only operations over ``RepositoryTree``.

Every write-side operation is refused by the mount options (``ro``) and by ``Operations``'
defaults (EROFS). Errors from the repository become EIO, logged with the path.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import mfusepy as fuse

from ..errors import E3Error
from .content import Content
from .tree import Entry, RepositoryTree, resolve

log = logging.getLogger(__name__)


class RepositoryFS(fuse.Operations):  # type: ignore[misc]
    use_ns = True  # node times are nanoseconds

    def __init__(self, tree: RepositoryTree, on_ready: Callable[[], None] | None = None) -> None:
        self.tree = tree
        self.on_ready = on_ready
        self._open: dict[int, Content] = {}
        self._fh = itertools.count(1)
        self._mu = threading.Lock()

    def _entry(self, path: str) -> Entry:
        try:
            return resolve(self.tree.root, path)
        except FileNotFoundError:
            raise fuse.FuseOSError(errno.ENOENT) from None
        except NotADirectoryError:
            raise fuse.FuseOSError(errno.ENOTDIR) from None
        except E3Error as e:
            log.error("%s: %s", path, e)
            raise fuse.FuseOSError(errno.EIO) from e

    def init(self, path: str) -> None:
        if self.on_ready is not None:
            self.on_ready()

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        return self._entry(path).attrs()

    def readdir(self, path: str, fh: int) -> list[str]:
        entry = self._entry(path)
        if entry.kind != "dir":
            raise fuse.FuseOSError(errno.ENOTDIR)
        try:
            return [".", "..", *entry.children()]
        except E3Error as e:
            log.error("%s: %s", path, e)
            raise fuse.FuseOSError(errno.EIO) from e

    def readlink(self, path: str) -> str:
        entry = self._entry(path)
        if entry.kind != "symlink":
            raise fuse.FuseOSError(errno.EINVAL)
        return entry.link_target.decode("utf-8", "surrogateescape")

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise fuse.FuseOSError(errno.EROFS)
        entry = self._entry(path)
        if entry.kind != "file" or entry.open_content is None:
            raise fuse.FuseOSError(errno.EACCES)
        try:
            content = entry.open_content()
        except E3Error as e:
            log.error("%s: %s", path, e)
            raise fuse.FuseOSError(errno.EIO) from e
        with self._mu:
            fh = next(self._fh)
            self._open[fh] = content
        return fh

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        content = self._open.get(fh)
        if content is None:
            raise fuse.FuseOSError(errno.EBADF)
        try:
            return content.read(offset, size)
        except E3Error as e:
            log.error("%s: read at %d: %s", path, offset, e)
            raise fuse.FuseOSError(errno.EIO) from e

    def release(self, path: str, fh: int) -> int:
        with self._mu:
            self._open.pop(fh, None)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    def access(self, path: str, amode: int) -> int:
        self._entry(path)
        if amode & os.W_OK:
            raise fuse.FuseOSError(errno.EROFS)
        return 0


__all__ = ["RepositoryFS"]
