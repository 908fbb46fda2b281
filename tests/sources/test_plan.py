"""Read plans of a real GPT disk: complete for every used block, free of deleted data, small."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from e3backup.events import Event, EventCode
from e3backup.sources.device import open_device
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout
from e3backup.sources.layout.read import read_layout
from e3backup.sources.plan import PlanMode, ReadPlan, build_read_plan, full_read_plan

from .diskimages import (
    GptDisk,
    MiB,
    copy_planned,
    debugfs_dump,
    dumpe2fs_used_blocks,
    loop_device,
    ntfscat,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]


def plan_of(path: str | Path) -> tuple[DiskLayout, ReadPlan, list[Event]]:
    events: list[Event] = []
    with open_device(path) as dev:
        layout = read_layout(dev)
        plan = build_read_plan(dev, layout, on_event=events.append)
    return layout, plan, events


def test_layout_of_the_gpt_disk(gpt_disk: GptDisk) -> None:
    layout, plan, events = plan_of(gpt_disk.path)
    assert layout.table == "gpt" and layout.sector_size == 512 and layout.disk_size == gpt_disk.size
    assert [(p.index, p.name, p.type_name, p.filesystem) for p in layout.partitions] == [
        (1, "root", "linux-fs", "ext4"),
        (2, "data", "ms-basic-data", "ntfs"),
        (3, "mystery", "linux-fs", None),
    ]
    assert [(p.start, p.size) for p in layout.partitions] == [
        (gpt_disk.ext4_start, gpt_disk.ext4_size),
        (gpt_disk.ntfs_start, gpt_disk.ntfs_size),
        (gpt_disk.raw_start, gpt_disk.raw_size),
    ]
    assert layout.notes == ()
    # one fallback event, for the unknown file system, which is read whole
    assert [(e.code, e.details["partition"]) for e in events] == [
        (EventCode.DISK_IMAGE_READ_PLAN_FALLBACK, 3)
    ]
    assert plan.extents.covers(gpt_disk.raw_start, gpt_disk.raw_size)
    # metadata: the first MiB and the backup GPT (entries + header) at the end
    assert plan.extents.covers(0, MiB)
    assert plan.extents.covers(gpt_disk.size - 33 * 512, 33 * 512)
    assert plan.planned_bytes < gpt_disk.size * 0.25
    stats = layout.with_plan(plan.stats()).to_json()["plan"]
    assert [p["source"] for p in stats["partitions"]] == ["ext-bitmap", "ntfs-bitmap", "whole"]
    assert stats["planned_bytes"] == plan.planned_bytes
    assert DiskLayout.loads(layout.with_plan(plan.stats()).dumps()) == layout.with_plan(plan.stats())


def test_plan_covers_ext4_used_blocks(gpt_disk: GptDisk) -> None:
    _, plan, _ = plan_of(gpt_disk.path)
    with loop_device(gpt_disk.path, gpt_disk.ext4_start, gpt_disk.ext4_size, ro=True) as dev:
        bs, used = dumpe2fs_used_blocks(dev)
    used_bytes = ExtentList((b.offset * bs, b.length * bs) for b in used).shift(gpt_disk.ext4_start)
    assert not used_bytes - plan.extents
    ext4_plan = plan.extents & ExtentList([(gpt_disk.ext4_start, gpt_disk.ext4_size)])
    assert ext4_plan - used_bytes == ExtentList([(gpt_disk.ext4_start, 2048)]) - used_bytes


def test_restored_copy_is_consistent_and_free_of_deleted_data(gpt_disk: GptDisk, tmp_path: Path) -> None:
    _, plan, _ = plan_of(gpt_disk.path)
    copy = tmp_path / "restored.img"
    copy_planned(gpt_disk.path, copy, plan.extents, gpt_disk.size)
    original = gpt_disk.path.read_bytes()
    restored = copy.read_bytes()
    assert original.count(b"E3STALE-") > 1000  # the deleted data really is on the source disk
    assert restored.count(b"E3STALE-") == 0
    with loop_device(copy, gpt_disk.ext4_start, gpt_disk.ext4_size) as dev:
        fsck = subprocess.run(["e2fsck", "-fn", dev], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        for name, data in gpt_disk.ext4_files.items():
            assert debugfs_dump(dev, name, tmp_path / "out") == data, name
    with loop_device(copy, gpt_disk.ntfs_start, gpt_disk.ntfs_size) as dev:
        fix = subprocess.run(["ntfsfix", "-n", dev], capture_output=True, text=True)
        assert fix.returncode == 0, fix.stdout + fix.stderr
        for name, data in gpt_disk.ntfs_files.items():
            assert ntfscat(dev, name) == data, name


def test_loop_device_gives_the_same_plan(gpt_disk: GptDisk, gpt_disk_loop: str) -> None:
    with open_device(gpt_disk_loop) as dev:
        assert dev.is_block_device and dev.size == gpt_disk.size and dev.sector_size == 512
    layout_file, plan_file, _ = plan_of(gpt_disk.path)
    layout_dev, plan_dev, _ = plan_of(gpt_disk_loop)
    assert layout_dev == layout_file
    assert plan_dev.extents == plan_file.extents


def test_full_mode_and_json_round_trip(gpt_disk: GptDisk) -> None:
    with open_device(gpt_disk.path) as dev:
        full = build_read_plan(dev, mode="full")
    assert full == full_read_plan(gpt_disk.size)
    assert full.mode is PlanMode.FULL and full.extents == ExtentList([(0, gpt_disk.size)])
    _, plan, _ = plan_of(gpt_disk.path)
    again = ReadPlan.from_json(plan.to_json())
    assert again.extents == plan.extents and again.device_size == plan.device_size
