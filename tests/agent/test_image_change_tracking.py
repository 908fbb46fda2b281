"""Change tracking through the agent: policy ``disk_image_cbt`` (alias ``disk_image_change_tracking``)
and ``disk_image_verify_every`` change what an image run reads, and its events say how."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.sources.diskimages import TwoFsDisk, fs_mount, loop_device, random_bytes
from tests.sources.diskimages import run as run_tool

from .conftest import Harness


def _tracking_event(harness: Harness, run_id: int) -> dict[str, Any]:
    found = [e for e in harness.events(run_id) if e["code"] == "DISK_IMAGE_CHANGE_TRACKING"]
    assert len(found) == 1, harness.codes(run_id)
    return found[0]


@pytest.mark.root
def test_policy_switches_change_tracking_and_the_verify_read(harness: Harness, tmp_path: Path) -> None:
    disk = TwoFsDisk(tmp_path / "disk.img")
    disk.make_filesystems(ext4_inodes=2000)
    for index, kind in ((1, "ext4"), (2, "ntfs")):  # data that does not change: 12 MiB per partition
        with disk.partition(index) as part, fs_mount(part, kind) as mnt:
            (mnt / "keep.bin").write_bytes(random_bytes(12 << 20, index))
    with disk.partition(1) as part:  # written long ago, as most files on a disk (the ctime guard)
        run_tool("debugfs", "-w", "-R", "set_inode_field /keep.bin ctime 20200101", part)
    agent, _ = harness.make_agent()

    def run(job: dict[str, Any]) -> int:
        run_id = harness.run_job(job["id"])
        assert agent.poll_once()
        r = harness.finish(agent, run_id)
        assert r["status"] == "warning"  # read live: DISK_IMAGE_SNAPSHOT_NONE, r
        return run_id

    with loop_device(disk.path) as dev:

        def job(name: str, **policy: Any) -> dict[str, Any]:
            return harness.files_job(
                agent,
                Path(dev),
                engine="disk_image",
                source_path="",
                disk_source_volume=dev,
                disk_image_format="raw",
                name=name,
                policy=policy,
            )

        tracked, off, verify = (
            job("tracked"),
            job("off", disk_image_cbt=False),
            job("verify", disk_image_change_tracking=True, disk_image_verify_every=1),
        )
        first = run(tracked)
        # restore points list the image's partitions as the backup read them (#26)
        points = harness.api("GET", "/api/restore-points", params={"job_id": tracked["id"]}).json()
        (point,) = [p for p in points if p["run_id"] == first]
        assert [(p["index"], p["filesystem"]) for p in point["partitions"]] == [(1, "ext4"), (2, "ntfs")]
        assert all(p["size"] > 12 << 20 for p in point["partitions"])
        harness.client.cookies.clear()
        page = harness.client.get("/restore-points", params={"job_id": tracked["id"]},
                                  headers={**harness.admin_headers, "Accept": "text/html"}).text
        assert page.count("<li>1") == 1 and "· ext4 ·" in page and "· ntfs ·" in page
        with disk.partition(2) as part, fs_mount(part, "ntfs") as mnt:
            (mnt / "new.bin").write_bytes(random_bytes(300_000, 5))
        second_run = run(tracked)
        second = _tracking_event(harness, second_run)
        methods = [(p["partition"], p["method"]) for p in second["details"]["partitions"]]
        assert methods == [(1, "ext4-inodes"), (2, "ntfs-mft")] and "ntfs-mft" in second["message"]
        page = harness.client.get(f"/runs/{second_run}", headers=harness.admin_headers)
        assert page.status_code == 200 and "DISK_IMAGE_CHANGE_TRACKING" in page.text, page.status_code
        assert "partition 2: ntfs-mft" in page.text  # the dashboard's run page shows it
        # policy disk_image_cbt false: the same disk, every used block read again
        third = _tracking_event(harness, run(off))
        assert {p["reason"] for p in third["details"]["partitions"]} == {"change tracking is off"}
        assert sum(p["bytes_planned"] for p in third["details"]["partitions"]) > sum(
            p["bytes_planned"] for p in second["details"]["partitions"]
        )
        # the alias, and a verify read every incremental; the parent (tracking off) has no digests
        fourth = run(verify)
        assert "DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE" in harness.codes(fourth)
        fifth = run(verify)
        event = _tracking_event(harness, fifth)
        assert all(p["reason"].startswith("verify read") for p in event["details"]["partitions"])
        assert "DISK_IMAGE_CHANGE_TRACKING_MISSED" not in harness.codes(fifth)
