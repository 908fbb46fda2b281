"""Small real disks for the proof tests: an MBR data disk with ext4 and NTFS partitions."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

MiB = 1 << 20
EXT4_START, EXT4_SIZE = 1 * MiB, 8 * MiB
NTFS_START, NTFS_SIZE = 9 * MiB, 8 * MiB
DISK_SIZE = 18 * MiB


def need_tools() -> None:
    for tool in ("mkfs.ext4", "mkntfs", "ntfscp", "sfdisk", "losetup", "e2fsck", "ntfsfix"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def build_data_disk(where: Path) -> Path:
    """An 18 MiB MBR disk without boot code: p1 ext4 (a few files), p2 NTFS (a few files)."""
    need_tools()
    rnd = random.Random(7)
    files = where / "files"
    (files / "docs").mkdir(parents=True)
    for i in range(6):
        (files / "docs" / f"f{i}.bin").write_bytes(rnd.randbytes(30_000 + 1000 * i))
    disk = where / "data.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_SIZE)
    table = f"label: dos\nstart=2048, size={EXT4_SIZE // 512}, type=83\nstart={NTFS_START // 512}, " \
            f"size={NTFS_SIZE // 512}, type=7\n"
    subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", str(disk)], input=table.encode(), check=True,
                   capture_output=True)
    _run("mkfs.ext4", "-q", "-F", "-b", "1024", "-E", f"offset={EXT4_START}", "-d", str(files), str(disk),
         str(EXT4_SIZE // 1024))
    ntfs = where / "ntfs.part"
    with open(ntfs, "wb") as f:
        f.truncate(NTFS_SIZE)
    _run("mkntfs", "-q", "-F", "-Q", "-s", "512", "-p", str(NTFS_START // 512), "-H", "255", "-S", "63", str(ntfs))
    for i in range(3):
        src = files / "docs" / f"f{i}.bin"
        _run("ntfscp", "-q", str(ntfs), str(src), f"f{i}.bin")
    with open(ntfs, "rb") as src_f, open(disk, "r+b") as dst:
        dst.seek(NTFS_START)
        shutil.copyfileobj(src_f, dst)
    ntfs.unlink()
    return disk
