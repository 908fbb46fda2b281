"""The XFS and FAT checkers of a proof of restore, on real file systems (mkfs.xfs, mkfs.fat).

The ext4 and NTFS checkers run through whole proofs in test_run_proof.py; XFS needs a 300 MiB file
system (mkfs.xfs's minimum), so these check the partitions directly: a clean one passes, a damaged
one fails with the checker's own words, through the same read-only loop device the proof uses.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from e3backup.proof.checkers import check_filesystem, loop_device

MiB = 1 << 20


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check(image: Path, fs: str) -> tuple[bool, str]:
    before = _digest(image)
    with loop_device(str(image), 0, image.stat().st_size) as dev:
        result = check_filesystem(fs, dev)
    assert _digest(image) == before  # read-only: the checker changed nothing
    return result


def test_xfs_partition_clean_then_damaged(tmp_path: Path) -> None:
    _need("mkfs.xfs", "xfs_repair", "losetup")
    image = tmp_path / "xfs.img"
    with open(image, "wb") as f:
        f.truncate(300 * MiB)
    subprocess.run(["mkfs.xfs", "-q", "-f", str(image)], check=True, capture_output=True)
    ok, said = _check(image, "xfs")
    assert ok and said.startswith("xfs_repair -n: clean"), said

    with open(image, "r+b") as f:  # allocation group 0's AGI (sector 2): its magic "XAGI" gone
        f.seek(2 * 512)
        assert f.read(4) == b"XAGI"
        f.seek(2 * 512)
        f.write(b"\0" * 512)
    ok, said = _check(image, "xfs")
    assert not ok and said.startswith("xfs_repair -n exit code 1:") and "bad magic # 0x0 for agi 0" in said, said


def test_fat_partition_clean_then_damaged(tmp_path: Path) -> None:
    _need("mkfs.fat", "fsck.fat", "mcopy", "losetup")
    image = tmp_path / "fat.img"
    with open(image, "wb") as f:
        f.truncate(16 * MiB)
    subprocess.run(["mkfs.fat", "-F", "16", "-n", "ESP", str(image)], check=True, capture_output=True)
    note = tmp_path / "note.txt"
    note.write_bytes(os.urandom(20_000))
    subprocess.run(["mcopy", "-i", str(image), str(note), "::note.txt"], check=True, capture_output=True)
    ok, said = _check(image, "vfat")
    assert ok and said.startswith("fsck.fat -n: clean"), said

    with open(image, "r+b") as f:  # the first FAT cuts the file's cluster chain short: the FATs differ
        boot = f.read(512)
        reserved = int.from_bytes(boot[14:16], "little")
        f.seek(reserved * 512 + 4)
        f.write(b"\xff\x00\xff\x00")
    ok, said = _check(image, "vfat")
    assert not ok and said.startswith("fsck.fat -n exit code 1:") and "FATs differ" in said, said
