"""A real GPT disk (ext4 + NTFS + an unknown partition, deleted data in free space) on a loop device.

The backup reads only the read plan; ``restic dump`` of the disk, cut into partitions at the
offsets of the stored layout, passes ``e2fsck -fn`` and ``ntfsfix -n``, every file reads back
identical, and none of the deleted data is in it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from e3backup.events import EventCode
from tests.helpers import restic
from tests.sources.diskimages import GptDisk, debugfs_dump, loop_device, ntfscat

from .conftest import backup, dump

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.restic]


def test_gpt_disk_on_a_loop_device(
    repo_path: Path, repo: object, gpt_disk: GptDisk, gpt_disk_loop: str, tmp_path: Path
) -> None:
    run = backup(repo_path, gpt_disk_loop)
    r = run.result
    assert r.device_size == gpt_disk.size
    assert r.bytes_read == r.plan_bytes < gpt_disk.size // 4  # only the used extents
    fallback = [e for e in run.events if e.code is EventCode.DISK_IMAGE_READ_PLAN_FALLBACK]
    assert [e.details["partition"] for e in fallback] == [3]  # the unknown file system, read whole
    name = Path(gpt_disk_loop).name + ".img"
    restored = tmp_path / "restored.img"
    restored.write_bytes(dump(repo_path, name))
    layout = json.loads(dump(repo_path, "layout.json"))
    assert layout["table"] == "gpt" and layout["plan"]["planned_bytes"] == r.plan_bytes
    parts = {p["filesystem"]: p for p in layout["partitions"]}
    original = gpt_disk.path.read_bytes()
    data = restored.read_bytes()
    assert len(data) == gpt_disk.size
    assert original.count(b"E3STALE-") > 1000 and data.count(b"E3STALE-") == 0  # deleted data left behind
    ext4, ntfs = parts["ext4"], parts["ntfs"]
    assert (ext4["start"], ntfs["start"]) == (gpt_disk.ext4_start, gpt_disk.ntfs_start)
    with loop_device(restored, ext4["start"], ext4["size"]) as dev:
        fsck = subprocess.run(["e2fsck", "-fn", dev], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        for fname, content in gpt_disk.ext4_files.items():
            assert debugfs_dump(dev, fname, tmp_path / "out") == content, fname
    with loop_device(restored, ntfs["start"], ntfs["size"]) as dev:
        fix = subprocess.run(["ntfsfix", "-n", dev], capture_output=True, text=True)
        assert fix.returncode == 0, fix.stdout + fix.stderr
        for fname, content in gpt_disk.ntfs_files.items():
            assert ntfscat(dev, fname) == content, fname
    mystery = slice(gpt_disk.raw_start, gpt_disk.raw_start + gpt_disk.raw_size)
    assert data[mystery] == original[mystery]  # unknown partition: read whole
    restic(repo_path, "check", "--read-data")


def test_image_file_source_gives_the_same_disk(
    repo_path: Path, repo: object, gpt_disk: GptDisk, gpt_disk_loop: str
) -> None:
    # without change tracking: its digests (a new blob each run, ~230 KB here) are not the point
    a = backup(repo_path, gpt_disk_loop, change_tracking=False).result
    b = backup(repo_path, gpt_disk.path, change_tracking=False).result
    assert b.plan_bytes == a.plan_bytes and b.bytes_read == a.bytes_read
    assert b.full and b.bytes_added < 64 * 1024  # other source, same chunks: deduplicated
    assert dump(repo_path, Path(gpt_disk_loop).name + ".img", a.snapshot_id) == dump(
        repo_path, "disk.img", b.snapshot_id
    )


def test_full_read_plan_reads_every_byte(repo_path: Path, repo: object, gpt_disk: GptDisk) -> None:
    r = backup(repo_path, gpt_disk.path, read_plan="full").result
    assert r.plan_bytes == r.bytes_read == gpt_disk.size
    assert dump(repo_path, "disk.img") == gpt_disk.path.read_bytes()  # deleted data included, as asked
    assert json.loads(dump(repo_path, "layout.json"))["plan"]["mode"] == "full"
