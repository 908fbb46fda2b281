"""Image restore onto block devices (loop devices pre-filled with garbage) and of a real GPT disk."""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest

from e3backup.errors import UsageError
from e3backup.sources.extents import ExtentList
from tests.engines.disk_image.conftest import MiB, backup, dump
from tests.sources.diskimages import GptDisk, copy_planned, debugfs_dump, loop_device, mounted

from .test_image_restore import restore

pytestmark = [pytest.mark.root, pytest.mark.restic]


@pytest.fixture
def garbage_device(tmp_path: Path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices)")
    backing = tmp_path / "garbage.dev"
    rnd = random.Random(5)
    with open(backing, "wb") as f:
        for _ in range(72):  # 72 MiB: larger than the 64 MiB disk, all stale data
            f.write(rnd.randbytes(MiB))
    with loop_device(backing) as dev:
        yield dev


@pytest.mark.parametrize("discard", [False, True])
def test_block_device_reads_exactly_as_the_source(
    repo_path: Path, repo: object, image: tuple[Path, bytes], garbage_device: str, discard: bool
) -> None:
    path, data = image
    backup(repo_path, path, chunk_size=MiB)
    r = restore(repo_path, garbage_device, discard=discard, verify=True)
    assert r.block_device and r.verified and r.chunks_zero > 0
    assert r.bytes_zeroed == r.chunks_zero * MiB
    with open(garbage_device, "rb") as f:
        got = f.read(len(data))
    assert got == data  # zeros where the disk is zero: no stale data survives


def test_small_device_mounted_device_and_vhdx_are_refused(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    path, _ = image
    backup(repo_path, path)
    small = tmp_path / "small.dev"
    with open(small, "wb") as f:
        f.truncate(32 * MiB)
    with loop_device(small) as dev, pytest.raises(UsageError, match="has 33554432 bytes"):
        restore(repo_path, dev)
    fs = tmp_path / "fs.dev"
    with open(fs, "wb") as f:
        f.truncate(96 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(fs)], check=True)
    with loop_device(fs) as dev:
        with mounted(dev) as mnt, pytest.raises(UsageError, match=f"in use .*mounted on {mnt}"):
            restore(repo_path, dev)
        with pytest.raises(UsageError, match="only --format raw"):
            restore(repo_path, dev, image_format="vhdx")


@pytest.mark.slow
def test_gpt_disk_restore_equals_plan_bytes_and_dump(
    repo_path: Path, repo: object, gpt_disk: GptDisk, tmp_path: Path
) -> None:
    run = backup(repo_path, gpt_disk.path)
    out = tmp_path / "gpt.raw"
    r = restore(repo_path, out, verify=True)
    assert out.read_bytes() == dump(repo_path, "disk.img")
    plan = json.loads(dump(repo_path, "layout.json"))["image"]["read_plan"]["extents"]
    expected = tmp_path / "expected.raw"
    copy_planned(gpt_disk.path, expected, ExtentList((o, n) for o, n in plan), gpt_disk.size)
    assert out.read_bytes() == expected.read_bytes()  # plan bytes, zeros elsewhere
    assert os.stat(out).st_blocks * 512 <= run.result.plan_bytes + 8 * MiB  # sparse: about the plan
    assert r.bytes_written >= run.result.plan_bytes // 2
    parts = {p["filesystem"]: p for p in json.loads(dump(repo_path, "layout.json"))["partitions"]}
    with loop_device(out, parts["ext4"]["start"], parts["ext4"]["size"]) as dev:
        for fname, content in gpt_disk.ext4_files.items():
            assert debugfs_dump(dev, fname, tmp_path / "x") == content
