"""Whether a restore target can take writes, said in words before anything is written.

A target on a file system mounted read-only, a read-only block device, a file of a kernel file
system (``/proc``, ``/sys``) or one this user may not write would otherwise fail deep inside the
restore with a raw ``OSError`` (EINVAL, EPERM from BLKZEROOUT, EROFS) that names no target.
The checks are Linux's (mountinfo, statvfs, BLKROGET); elsewhere only the permission check runs.
"""

from __future__ import annotations

import os
import stat
import struct
import sys

from ..errors import UsageError
from ..platform.compat import READ_FLAGS

_BLKROGET = 0x125E  # linux/fs.h: _IO(0x12, 94)
_KERNEL_FS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "configfs",
    "efivarfs", "pstore", "bpf", "fusectl", "binfmt_misc", "autofs", "mqueue", "hugetlbfs",
})


def file_system_type(path: str) -> str:
    """The type of the file system holding ``path`` (``/proc/self/mountinfo``), or ``""``."""
    real = os.path.realpath(path)
    best, fs = "", ""
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mnt = fields[4].replace("\\040", " ")
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best):
            best, fs = mnt, right.split()[0]
    return fs


def read_only_reason(path: str) -> str | None:
    """Why the existing ``path`` (a file, device or directory) cannot be written, as the end of
    a sentence that names it ("... is read-only: ..."), or ``None``."""
    if sys.platform != "win32":
        why = _read_only_on_unix(path)
        if why is not None:
            return why
    if not os.access(path, os.W_OK):
        return "is not writable: permission denied"
    return None


if sys.platform != "win32":

    def _read_only_on_unix(path: str) -> str | None:
        fs = file_system_type(path)
        if fs in _KERNEL_FS:
            return f"is read-only: it is on the kernel's {fs} file system, not storage"
        try:
            if os.statvfs(path).f_flag & os.ST_RDONLY:
                return "is read-only: its file system is mounted read-only"
            st = os.stat(path)
        except OSError as e:
            return f"cannot be written: {e.strerror or e}"
        if stat.S_ISBLK(st.st_mode) and _block_device_read_only(path):
            return "is read-only: the block device is set read-only"
        return None

    def _block_device_read_only(path: str) -> bool:
        import fcntl  # here: file restores also run on Windows, which has no fcntl

        try:
            fd = os.open(path, READ_FLAGS)
            try:
                return bool(struct.unpack("i", fcntl.ioctl(fd, _BLKROGET, b"\0" * 4))[0])
            finally:
                os.close(fd)
        except OSError:
            return False


def refuse_read_only(path: str, what: str = "restore target") -> None:
    """``UsageError`` naming ``path`` if it cannot take writes; ``path`` must exist."""
    why = read_only_reason(path)
    if why is not None:
        raise UsageError(f"{what} {path} {why}")


def refuse_unwritable_directory(path: str, what: str = "restore target") -> None:
    """``UsageError`` if the directory ``path`` (made if missing) cannot take the restore: it,
    or the nearest existing directory above it, cannot be written."""
    if os.path.exists(path):
        refuse_read_only(path, what)
        return
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above) and above != os.path.dirname(above):
        above = os.path.dirname(above)
    why = read_only_reason(above)
    if why is not None:
        raise UsageError(f"{what} {path} cannot be created: directory {above} {why}")


__all__ = ["file_system_type", "read_only_reason", "refuse_read_only", "refuse_unwritable_directory"]
