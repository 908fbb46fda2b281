"""Where an image restore may write: the rules checked before a single byte is written.

- A regular file that exists is overwritten only with ``force``; a directory never.
- A block device must hold the whole disk, must not be mounted, used as swap or held by another
  device (device-mapper, md), and is written only as raw.
- A new file needs an existing parent directory.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass

from ..errors import UsageError
from ..formats.raw import RawReader
from .writable import read_only_reason, refuse_read_only


@dataclass(frozen=True)
class Target:
    path: str
    is_block_device: bool
    existed: bool


@dataclass(frozen=True)
class SettingNames:
    """How the caller names the settings an error may point to: the CLI's flags, or the agent's
    restore request fields (an agent run's error must not tell a dashboard user to pass a flag)."""

    force: str = "--force"
    raw_format: str = "--format raw"


CLI_NAMES = SettingNames()
REQUEST_NAMES = SettingNames(force="force: true in the restore request", raw_format="format raw")


def check_target(
    path: str, image_format: str, device_size: int, force: bool = False, names: SettingNames = CLI_NAMES
) -> Target:
    """The target, or ``UsageError`` saying why it cannot take this image."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UsageError(f"restore target {path}: directory {parent} does not exist") from None
        why = read_only_reason(parent)
        if why is not None:
            raise UsageError(f"restore target {path} cannot be created: directory {parent} {why}") from None
        return Target(path, False, False)
    if sys.platform != "win32" and stat.S_ISBLK(st.st_mode):  # Windows disks: not in this build
        if image_format != "raw":
            raise UsageError(f"restore target {path} is a block device: only {names.raw_format} can be written to it")
        with RawReader(path) as r:
            size = r.virtual_size
        if size < device_size:
            raise UsageError(f"restore target {path} has {size} bytes, the disk image needs {device_size}")
        user = device_user(st.st_rdev)
        if user:
            raise UsageError(f"restore target {path} is in use ({user}): unmount it first")
        refuse_read_only(path)
        return Target(path, True, True)
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"restore target {path} is a directory; give a file name or a block device")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"restore target {path} is neither a regular file nor a block device")
    refuse_read_only(path)
    if not force:
        raise UsageError(f"restore target {path} exists: use {names.force} to overwrite it")
    return Target(path, False, True)


def _sys_path(rdev: int) -> str:
    if sys.platform == "win32":
        raise OSError("no /sys on Windows")
    return os.path.realpath(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}")


def device_user(rdev: int) -> str | None:
    """Who uses block device ``rdev`` or one of its partitions: a mount, swap or a holder."""
    disk = _sys_path(rdev)
    family = {disk}
    if os.path.isdir(disk):
        parts = (os.path.join(disk, d) for d in os.listdir(disk))
        family |= {p for p in parts if os.path.exists(os.path.join(p, "partition"))}
    for member in family:
        holders = os.path.join(member, "holders")
        if os.path.isdir(holders) and os.listdir(holders):
            return f"held by {', '.join(sorted(os.listdir(holders)))}"

    def in_family(source: str) -> bool:
        try:
            s = os.stat(source)
        except OSError:
            return False
        return sys.platform != "win32" and stat.S_ISBLK(s.st_mode) and _sys_path(s.st_rdev) in family

    for table, what in (("/proc/self/mounts", "mounted on"), ("/proc/swaps", "swap")):
        try:
            with open(table) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if not fields or not fields[0].startswith("/"):
                continue
            source = fields[0].replace("\\040", " ")
            if in_family(source):
                where = fields[1].replace("\\040", " ") if what == "mounted on" and len(fields) > 1 else ""
                return f"{source} {what} {where}".strip()
    return None


__all__ = ["CLI_NAMES", "REQUEST_NAMES", "SettingNames", "Target", "check_target", "device_user"]
