"""``e3backup mount``: the repository as a read-only FUSE file system (``docs/mount.md``).

``run_mount`` holds a shared repository lock, loads the index and the snapshot list once, and
serves in the foreground until Ctrl-C or SIGTERM; libfuse then unmounts, and a mount left behind
(a crash of the loop) is removed with ``fusermount3 -u`` (``fusermount -u`` as a fallback).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable

from ..errors import E3Error, UsageError
from ..repo.repository import Repository
from .blobcache import DEFAULT_CACHE_BYTES, BlobCache
from .tree import RepositoryTree


def unmount(mountpoint: str) -> bool:
    """Unmount a FUSE mount; True when it is gone."""
    for tool in ("fusermount3", "fusermount"):
        if shutil.which(tool) and subprocess.run([tool, "-u", "-z", mountpoint], capture_output=True).returncode == 0:
            return True
    return not os.path.ismount(mountpoint)


def run_mount(
    repo: Repository,
    mountpoint: str,
    allow_other: bool = False,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the repository at ``mountpoint`` until interrupted (blocks)."""
    import mfusepy as fuse  # imported here: loading libfuse is only needed to mount

    from ..repo.blob import BlobType
    from ..repo.repository import warn_unreadable_snapshot
    from .fs import RepositoryFS

    if not os.path.isdir(mountpoint):
        raise UsageError(f"mount point {mountpoint} is not a directory")
    if os.path.ismount(mountpoint):
        raise UsageError(f"{mountpoint} is already a mount point")
    with repo.lock():
        repo.load_index()
        cache = BlobCache(lambda blob_id: repo.load_blob(BlobType.DATA, blob_id), cache_bytes)
        tree = RepositoryTree(repo, repo.snapshots(on_error=warn_unreadable_snapshot), cache)
        ops = RepositoryFS(tree, on_ready)
        # libfuse installs its SIGINT/SIGTERM/SIGHUP handlers (exit the loop, unmount) only where
        # the handler is the default one; the CLI's own SIGTERM handler would keep them out.
        previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            fuse.FUSE(
                ops,
                mountpoint,
                foreground=True,
                ro=True,
                allow_other=allow_other,
                fsname="e3backup",
                subtype="e3backup",
                default_permissions=True,
            )
        except RuntimeError as e:
            raise E3Error(f"mounting at {mountpoint} failed (libfuse returned {e}): is FUSE available?") from e
        finally:
            signal.signal(signal.SIGTERM, previous)
            if os.path.ismount(mountpoint):
                unmount(mountpoint)


__all__ = ["run_mount", "unmount"]
