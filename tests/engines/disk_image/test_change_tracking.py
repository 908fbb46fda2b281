"""Change tracking through the image engine, on a real GPT disk with ext4 and NTFS partitions.

An incremental reads the file systems' metadata and the changed files only, and restic's dump of
it equals the disk; every fallback (reformat, resize, another disk, no digests, tracking off)
reads the used blocks in full with an event; a direct device write is invisible to tracking and
found by the periodic verify read.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from e3backup.errors import Cancelled
from e3backup.events import EventCode
from e3backup.sources.device import open_device
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.read import read_layout
from e3backup.sources.plan import PlanMode, build_read_plan
from tests.helpers import restic, run_cli
from tests.sources.diskimages import TwoFsDisk, debugfs_blocks, fs_mount, ntfs_file_clusters, random_bytes, run

from .conftest import Run, backup, counting_opener, dump

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mount)")
CHUNK = 64 * 1024
ROW_KEYS = {"partition", "method", "reason", "bytes_planned"}


@pytest.fixture()
def disk(tmp_path: Path) -> TwoFsDisk:
    d = TwoFsDisk(tmp_path / "disk.img")
    d.make_filesystems(ext4_inodes=2000)
    for index, kind in ((1, "ext4"), (2, "ntfs")):
        with d.partition(index) as dev, fs_mount(dev, kind) as mnt:
            (mnt / "keep.bin").write_bytes(random_bytes(2 << 20, index))
            (mnt / "big.bin").write_bytes(random_bytes(3 << 20, index + 10))
            (mnt / "dir").mkdir()
            for i in range(50):
                (mnt / "dir" / f"s{i}").write_bytes(random_bytes(1000 + i, i))
    with d.partition(1) as dev:  # keep.bin is old news, as most files on a disk: beyond the ctime guard
        run("debugfs", "-w", "-R", "set_inode_field /keep.bin ctime 20200101", dev)
    return d


def _write(disk: TwoFsDisk, index: int, kind: str, name: str, offset: int, data: bytes) -> None:
    with disk.partition(index) as dev, fs_mount(dev, kind) as mnt, open(mnt / name, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _file_extents(disk: TwoFsDisk, index: int, name: str) -> ExtentList:
    start, size = disk.parts[index]
    part = disk.path.parent / f"p{index}.img"
    run(
        "dd",
        f"if={disk.path}",
        f"of={part}",
        "bs=64K",
        f"skip={start}",
        f"count={size}",
        "iflag=skip_bytes,count_bytes",
        "status=none",
    )
    blocks = debugfs_blocks(part, name) if index == 1 else ntfs_file_clusters(part, name)
    part.unlink()
    return ExtentList((start + b.offset * 4096, b.length * 4096) for b in blocks)


def _assert_image_is_the_disk(repo_path: Path, disk: TwoFsDisk, snapshot: str) -> None:
    """restic's dump equals the disk on every planned byte and is zero elsewhere."""
    with open_device(disk.path) as dev:
        plan = build_read_plan(dev, read_layout(dev), PlanMode.USED).extents
    image = np.frombuffer(dump(repo_path, "disk.img", snapshot), dtype=np.uint8)
    now = np.fromfile(disk.path, dtype=np.uint8)
    mask = np.zeros(len(now), dtype=bool)
    for e in plan:
        mask[e.offset : e.end] = True
    bad = np.flatnonzero((image != now) & mask)
    assert not len(bad), f"{len(bad)} planned bytes differ, first at {bad[0] if len(bad) else None}"
    assert not image[~mask].any()


def test_incremental_reads_what_changed_and_gives_back_the_disk(repo_path: Path, repo: object, disk: TwoFsDisk) -> None:
    full = backup(repo_path, disk.path, chunk_size=CHUNK).result
    assert [r["method"] for r in full.change_tracking] == ["none", "none"] and full.full
    again = backup(repo_path, disk.path, chunk_size=CHUNK)  # re-reads what was written seconds ago
    assert [r["method"] for r in again.result.change_tracking] == ["ext4-inodes", "ntfs-mft"]
    _write(disk, 1, "ext4", "big.bin", 1 << 20, b"E" * 100_000)
    _write(disk, 2, "ntfs", "big.bin", 2 << 20, b"N" * 100_000)
    opener, devices = counting_opener()
    inc = backup(repo_path, disk.path, chunk_size=CHUNK, opener=opener)
    r = inc.result
    assert not r.full and r.change_map_used
    assert [set(row) for row in r.change_tracking] == [ROW_KEYS, ROW_KEYS]
    assert [row["method"] for row in r.change_tracking] == ["ext4-inodes", "ntfs-mft"]
    assert all(row["bytes_planned"] > 0 for row in r.change_tracking)
    assert r.bytes_read >= sum(row["bytes_planned"] for row in r.change_tracking)
    assert r.bytes_read <= r.plan_bytes - (4 << 20), (r.bytes_read, r.plan_bytes)  # not the two keep.bin
    read = ExtentList(devices[0].reads)
    for index in (1, 2):  # unchanged 2 MiB files are never read; the changed ones are
        assert not (read & _file_extents(disk, index, "keep.bin")), index
        assert read & _file_extents(disk, index, "big.bin"), index
    summary = [e for e in inc.events if e.code is EventCode.DISK_IMAGE_CHANGE_TRACKING]
    assert len(summary) == 1 and "ntfs-mft" in summary[0].message and "ext4-inodes" in summary[0].message
    assert EventCode.DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE not in inc.codes()
    _assert_image_is_the_disk(repo_path, disk, r.snapshot_id)
    # a verify read of the same disk finds nothing tracking missed, and says it was one
    verify = backup(repo_path, disk.path, chunk_size=CHUNK, verify_every=1)
    assert EventCode.DISK_IMAGE_CHANGE_TRACKING_MISSED not in verify.codes()
    assert all(row["reason"].startswith("verify read") for row in verify.result.change_tracking)
    assert verify.result.bytes_read > r.bytes_read
    restic(repo_path, "check", "--read-data")


def test_direct_device_write_is_missed_by_tracking_and_caught_by_the_verify_read(
    repo_path: Path, repo: object, disk: TwoFsDisk
) -> None:
    backup(repo_path, disk.path, chunk_size=CHUNK, verify_every=3)
    backup(repo_path, disk.path, chunk_size=CHUNK, verify_every=3)  # 1st incremental
    target = _file_extents(disk, 1, "keep.bin")[0].offset + 8192  # inside keep.bin, behind ext4's back
    with open(disk.path, "r+b") as f:
        f.seek(target)
        f.write(b"\xee" * 4096)
    second = backup(repo_path, disk.path, chunk_size=CHUNK, verify_every=3)  # 2nd: tracked, misses it
    assert EventCode.DISK_IMAGE_CHANGE_TRACKING_MISSED not in second.codes()
    stale = dump(repo_path, "disk.img", second.result.snapshot_id)
    assert stale[target : target + 4096] != b"\xee" * 4096  # the documented blind spot
    third = backup(repo_path, disk.path, chunk_size=CHUNK, verify_every=3)  # 3rd: the verify read
    missed = [e for e in third.events if e.code is EventCode.DISK_IMAGE_CHANGE_TRACKING_MISSED]
    assert len(missed) == 1
    ranges = ExtentList((o, n) for o, n in missed[0].details["ranges"])
    assert ranges.covers(target, 4096) and ranges.total_bytes == CHUNK and missed[0].details["partitions"] == [1]
    _assert_image_is_the_disk(repo_path, disk, third.result.snapshot_id)
    fourth = backup(repo_path, disk.path, chunk_size=CHUNK, verify_every=3)  # the counter starts again
    assert not fourth.result.change_tracking[0]["reason"].startswith("verify read")


def _settled(path: Path) -> None:
    """ntfs-3g goes on writing after ``umount`` returns; its loop device (detached on last close)
    is gone once it has finished, and then the disk holds what a backup should see twice."""
    deadline = time.monotonic() + 60
    while run("losetup", "-j", str(path)).strip():
        assert time.monotonic() < deadline, f"loop devices of {path} still attached"
        time.sleep(0.05)  # polling a condition, not timing anything


def test_metadata_chunks_are_read_only_when_their_bytes_changed(repo_path: Path, repo: object, disk: TwoFsDisk) -> None:
    with disk.partition(1) as dev:  # every file is old news: no ctime guard, the digests decide
        names = ["big.bin", *(f"dir/s{i}" for i in range(50))]
        script = disk.path.parent / "old-ctimes"
        script.write_text("".join(f"set_inode_field /{n} ctime 20200101\n" for n in names))
        run("debugfs", "-w", "-f", str(script), dev)
        journal = [int(b) for b in run("debugfs", "-R", "blocks <8>", dev).split()]
    _settled(disk.path)
    full = backup(repo_path, disk.path, chunk_size=CHUNK).result
    assert full.full and full.bytes_read == full.plan_bytes
    quiet = backup(repo_path, disk.path, chunk_size=CHUNK).result  # unchanged: no chunk is read
    assert [r["method"] for r in quiet.change_tracking] == ["ext4-inodes", "ntfs-mft"]
    assert quiet.bytes_read == 0 and quiet.chunks_reused + quiet.chunks_zero == quiet.chunks_total
    assert 0 < quiet.tracking_bytes_read < full.plan_bytes
    # a write into the journal's middle behind ext4's back: its metadata chunk's digest differs
    target = disk.parts[1][0] + journal[len(journal) // 2] * 4096 + 100
    with open(disk.path, "r+b") as f:
        f.seek(target)
        f.write(random_bytes(2000, 5))
    after = backup(repo_path, disk.path, chunk_size=CHUNK).result
    assert after.bytes_read == CHUNK and after.change_tracking[0]["bytes_planned"] == CHUNK
    _assert_image_is_the_disk(repo_path, disk, after.snapshot_id)
    restic(repo_path, "check", "--read-data")


def _unavailable(run: Run) -> dict[int, str]:
    return {
        e.details["partition"]: e.details["reason"]
        for e in run.events
        if e.code is EventCode.DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE
    }


def test_reformatted_partition_is_read_in_full_with_the_event(repo_path: Path, repo: object, disk: TwoFsDisk) -> None:
    backup(repo_path, disk.path, chunk_size=CHUNK)
    with disk.partition(2) as dev:
        run("mkntfs", "-F", "-Q", "-q", "-c", "4096", dev)
        with fs_mount(dev, "ntfs") as mnt:
            (mnt / "other.bin").write_bytes(random_bytes(1 << 20, 77))
    start, size = disk.parts[2]
    with open(disk.path, "r+b") as f:  # mkntfs takes its serial from the clock; Windows' is random
        for off in (start + 0x48, start + size - 512 + 0x48):
            f.seek(off)
            f.write(b"\x5a" * 8)
    inc = backup(repo_path, disk.path, chunk_size=CHUNK)
    why = _unavailable(inc)
    assert list(why) == [2] and "identity changed" in why[2] and "serial" in why[2]
    rows = inc.result.change_tracking
    assert (rows[0]["method"], rows[1]["method"]) == ("ext4-inodes", "none") and rows[1]["reason"] == why[2]
    _assert_image_is_the_disk(repo_path, disk, inc.result.snapshot_id)


def test_resized_partition_and_another_disk_read_in_full_with_the_event(
    repo_path: Path, repo: object, disk: TwoFsDisk, tmp_path: Path
) -> None:
    first = backup(repo_path, disk.path, chunk_size=CHUNK).result
    (tmp_path / "other").mkdir()
    other = TwoFsDisk(tmp_path / "other" / "disk.img")
    other.make_filesystems(ext4_inodes=2000)
    foreign = backup(repo_path, other.path, chunk_size=CHUNK, parent=first.snapshot_id)
    assert set(_unavailable(foreign)) == {1, 2}
    assert all("partition layout changed" in r for r in _unavailable(foreign).values())
    assert foreign.result.full
    # grow partition 1's file system into a bigger partition: another layout
    size = disk.parts[1][1]
    subprocess.run(["sgdisk", "-d", "2", str(disk.path)], capture_output=True, check=True)
    run("sgdisk", "-d", "1", "-n", f"1:2048:+{size // 1024 + 1024}K", "-t", "1:8300", disk.path)
    resized = backup(repo_path, disk.path, chunk_size=CHUNK)
    assert _unavailable(resized) and all("partition layout changed" in r for r in _unavailable(resized).values())
    assert resized.result.full and resized.result.bytes_read == resized.result.plan_bytes


def test_parent_without_digests_and_tracking_off(repo_path: Path, repo: object, disk: TwoFsDisk) -> None:
    off = backup(repo_path, disk.path, chunk_size=CHUNK, change_tracking=False).result
    assert all(
        r
        == {
            "partition": r["partition"],
            "method": "none",
            "reason": "change tracking is off",
            "bytes_planned": r["bytes_planned"],
        }
        for r in off.change_tracking
    )
    inc = backup(repo_path, disk.path, chunk_size=CHUNK)
    assert set(_unavailable(inc)) == {1, 2}
    assert all("without change-tracking digests" in r for r in _unavailable(inc).values())
    assert inc.result.bytes_read == inc.result.plan_bytes
    tracked = backup(repo_path, disk.path, chunk_size=CHUNK)
    assert [r["method"] for r in tracked.result.change_tracking] == ["ext4-inodes", "ntfs-mft"]


def test_killed_backup_leaves_the_chain_to_the_last_complete_image(
    repo_path: Path, repo: object, disk: TwoFsDisk
) -> None:

    first = backup(repo_path, disk.path, chunk_size=CHUNK).result
    _write(disk, 2, "ntfs", "big.bin", 0, b"K" * 300_000)
    stop = threading.Event()
    opener, _ = counting_opener(lambda n: stop.set() if n >= 3 else None)
    with pytest.raises(Cancelled):
        backup(repo_path, disk.path, chunk_size=CHUNK, opener=opener, cancel=stop)
    _write(disk, 1, "ext4", "big.bin", 0, b"L" * 300_000)
    after = backup(repo_path, disk.path, chunk_size=CHUNK).result
    assert after.parent_id == first.snapshot_id and not after.full
    _assert_image_is_the_disk(repo_path, disk, after.snapshot_id)


def test_cli_change_tracking_flag_and_json_summary(
    repo_path: Path, repo: object, disk: TwoFsDisk, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("-r", str(repo_path), "image", "backup", str(disk.path), "--json", "--chunk-size", "64K")
    assert run_cli(capsys, *args).code == 0
    res = run_cli(capsys, *args, "--change-tracking", "off")
    off = json.loads(res.out.splitlines()[-1])
    assert [(r["partition"], r["method"], r["reason"]) for r in off["change_tracking"]] == [
        (1, "none", "change tracking is off"),
        (2, "none", "change tracking is off"),
    ]
    assert off["bytes_read"] == off["plan_bytes"]
    res = run_cli(capsys, *args)  # default auto; the parent (tracking off) has no digests
    res = run_cli(capsys, *args)
    auto = json.loads(res.out.splitlines()[-1])
    assert [set(r) for r in auto["change_tracking"]] == [ROW_KEYS, ROW_KEYS]
    assert [r["method"] for r in auto["change_tracking"]] == ["ext4-inodes", "ntfs-mft"]
    assert auto["bytes_read"] < off["bytes_read"]
    human = run_cli(capsys, *args[:-3], "--chunk-size", "64K")  # without --json: a line per partition
    assert human.code == 0 and "partition 1: ext4-inodes" in human.err + human.out
    assert "partition 2: ntfs-mft" in human.err + human.out
    bad = run_cli(capsys, *args, "--change-tracking", "sometimes")
    assert bad.code != 0 and "--change-tracking" in bad.err
