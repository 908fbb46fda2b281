"""File system checkers run read-only on one partition of a restored image (Linux tools).

    ext2/3/4   e2fsck -fn      0: clean; anything else: errors left (``-n`` answers "no")
    ntfs       ntfsfix -n      0: clean; 1: it would have to repair something
    xfs        xfs_repair -n   0: clean; 1: corruption found
    vfat       fsck.fat -n     0: clean; 1: errors found

The partition is given to the checker as a read-only loop device over its byte range of the
scratch image (``losetup --read-only --offset --sizelimit``), so nothing can write to it and no
copy is made. A checker that is not installed fails the check and says which package to install:
a proof that cannot check a file system does not pass.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

CHECK_TIMEOUT = 600.0


@dataclass(frozen=True)
class Checker:
    argv: tuple[str, ...]
    package: str

    @property
    def program(self) -> str:
        return self.argv[0]


CHECKERS: dict[str, Checker] = {
    "ext2": Checker(("e2fsck", "-f", "-n"), "e2fsprogs"),
    "ext3": Checker(("e2fsck", "-f", "-n"), "e2fsprogs"),
    "ext4": Checker(("e2fsck", "-f", "-n"), "e2fsprogs"),
    "ntfs": Checker(("ntfsfix", "-n"), "ntfs-3g"),
    "xfs": Checker(("xfs_repair", "-n"), "xfsprogs"),
    "vfat": Checker(("fsck.fat", "-n"), "dosfstools"),
}
UNCHECKABLE = {
    "swap": "swap space holds no files",
    "luks": "encrypted (LUKS): its contents cannot be checked without the key",
    "lvm2-pv": "an LVM physical volume: its logical volumes are not checked",
}


class LoopError(Exception):
    """A loop device could not be set up over the partition."""


@contextmanager
def loop_device(image: str, offset: int, size: int) -> Iterator[str]:
    """A read-only loop device over ``size`` bytes of ``image`` at ``offset``, detached after."""
    try:
        done = subprocess.run(
            ["losetup", "--find", "--show", "--read-only", "--offset", str(offset), "--sizelimit", str(size), image],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LoopError(f"losetup: {e}") from e
    if done.returncode != 0:
        raise LoopError(f"losetup: {done.stderr.strip() or f'exit code {done.returncode}'}")
    device = done.stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], capture_output=True, timeout=60, check=False)


# progress lines say where a checker is, not what it found (xfs_repair's phases, e2fsck's passes)
_PROGRESS = ("Phase ", "Pass ", "- ", "fsck.fat ", "No modify flag set", "Cannot get host filesystem geometry",
             "Repair may fail if there is a sector size", "the image and the host filesystem")


def _said(text: str, lines: int = 6) -> str:
    """What a checker found, in one line: its first findings (the cause) and its last (the
    verdict), without its progress lines."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    found = [line for line in kept if not line.startswith(_PROGRESS)] or kept
    if len(found) > lines:
        found = [*found[: lines // 2], "...", *found[-(lines - lines // 2):]]
    return " | ".join(found)


def check_filesystem(fs: str, device: str) -> tuple[bool, str]:
    """Run the checker of ``fs`` on ``device`` read-only: (clean, what it said in one line)."""
    checker = CHECKERS[fs]
    if shutil.which(checker.program) is None:
        return False, f"{checker.program} is not installed on this machine (Debian package {checker.package})"
    try:
        done = subprocess.run([*checker.argv, device], capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                              check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False, f"{checker.program} did not finish within {CHECK_TIMEOUT:.0f} s"
    said = _said(done.stdout + "\n" + done.stderr)
    command = " ".join(checker.argv)
    if done.returncode == 0:
        return True, f"{command}: clean" + (f" ({said})" if said else "")
    return False, f"{command} exit code {done.returncode}: {said}"


__all__ = ["CHECKERS", "UNCHECKABLE", "Checker", "LoopError", "check_filesystem", "loop_device"]
