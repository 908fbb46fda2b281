"""Partition tables from real tools (sgdisk, sfdisk): GPT with damaged copies, MBR with logicals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e3backup.events import Event, EventCode
from e3backup.sources.device import BytesSource, open_device
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout, Partition
from e3backup.sources.layout.read import read_layout
from e3backup.sources.plan import build_read_plan

from .diskimages import GPT_MS_BASIC, MiB, make_ext, run, sample_files


def gpt_image(tmp_path: Path) -> Path:
    img = tmp_path / "gpt.img"
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    run("sgdisk", "-n", "1:2048:+8M", "-t", "1:EF00", "-c", "1:EFI system",
        "-n", "2:0:+4M", "-t", "2:0C01", "-n", "3:0:+20M", "-t", f"3:{GPT_MS_BASIC}", "-c", "3:Données",
        "-n", "4:0:0", "-t", "4:8E00", img)  # fmt: skip
    return img


def layout_of(img: Path) -> DiskLayout:
    with open_device(img) as dev:
        return read_layout(dev)


def test_gpt_entries_names_and_types(tmp_path: Path) -> None:
    layout = layout_of(gpt_image(tmp_path))
    assert layout.table == "gpt" and layout.notes == ()
    assert [(p.index, p.type_name, p.name) for p in layout.partitions] == [
        (1, "efi-system", "EFI system"),
        (2, "ms-reserved", ""),
        (3, "ms-basic-data", "Données"),
        (4, "linux-lvm", ""),
    ]
    assert layout.partitions[0].start == MiB and layout.partitions[0].size == 8 * MiB
    last = layout.partitions[3]
    assert last.end == 64 * MiB - 33 * 512  # up to the backup entries (32 sectors) + header
    # both copies of the table are in the table extents
    assert layout.table_extents.covers(512, 33 * 512)
    assert layout.table_extents.covers(64 * MiB - 33 * 512, 33 * 512)


def _corrupt(img: Path, offset: int) -> None:
    with open(img, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_damaged_primary_header_falls_back_to_backup(tmp_path: Path) -> None:
    img = gpt_image(tmp_path)
    good = layout_of(img)
    _corrupt(img, 512 + 40)  # inside the primary header: its CRC no longer matches
    layout = layout_of(img)
    assert layout.partitions == good.partitions
    assert layout.notes == ("primary GPT invalid; partitions read from the backup GPT",)


def test_damaged_primary_entries_fall_back_to_backup(tmp_path: Path) -> None:
    img = gpt_image(tmp_path)
    good = layout_of(img)
    _corrupt(img, 2 * 512 + 130)  # the second entry of the primary array
    assert layout_of(img).partitions == good.partitions


def test_damaged_backup_is_noted(tmp_path: Path) -> None:
    img = gpt_image(tmp_path)
    _corrupt(img, 64 * MiB - 512 + 20)
    layout = layout_of(img)
    assert len(layout.partitions) == 4 and layout.notes == ("backup GPT invalid or missing",)


def test_both_copies_damaged_means_whole_device_with_event(tmp_path: Path) -> None:
    img = gpt_image(tmp_path)
    _corrupt(img, 512 + 40)
    _corrupt(img, 64 * MiB - 512 + 20)
    events: list[Event] = []
    with open_device(img) as dev:
        layout = read_layout(dev)
        plan = build_read_plan(dev, layout, on_event=events.append)
    assert layout.table == "none" and layout.partitions == ()
    assert "GPT signature found but neither GPT copy is valid" in layout.notes
    assert plan.extents == ExtentList([(0, 64 * MiB)])
    assert [e.code for e in events] == [EventCode.DISK_IMAGE_READ_PLAN_FALLBACK]
    assert "no readable partition table" in events[0].message


def test_mbr_with_extended_and_logical_partitions(tmp_path: Path) -> None:
    img = tmp_path / "mbr.img"
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    script = "label: dos\nstart=2048, size=16384, type=83, bootable\nstart=18432, size=8192, type=7\n"
    script += "start=26624, type=5\nsize=8192, type=83\nsize=8192, type=82\n"
    run("sfdisk", "-q", img, input=script.encode())
    make_ext(img, 16384 * 512, sample_files(2), offset=2048 * 512)
    layout = layout_of(img)
    assert layout.table == "mbr"
    assert [(p.index, p.type, p.type_name, p.bootable, p.filesystem) for p in layout.partitions] == [
        (1, "0x83", "linux-fs", True, "ext4"),
        (2, "0x07", "ntfs-exfat", False, None),
        (5, "0x83", "linux-fs", False, None),
        (6, "0x82", "linux-swap", False, None),
    ]
    ebrs = [e.offset for e in layout.table_extents]
    assert ebrs[0] == 0 and len(ebrs) == 3  # the MBR and two EBRs
    logical5, logical6 = layout.partitions[2], layout.partitions[3]
    assert ebrs[1] == 26624 * 512 and logical5.start > ebrs[1]
    assert ebrs[2] < logical6.start
    # EBRs are planned (table extents), the extended container itself is not read whole
    events: list[Event] = []
    with open_device(img) as dev:
        plan = build_read_plan(dev, layout, on_event=events.append)
    assert all(plan.extents.covers(o, 512) for o in ebrs)
    assert sorted(e.details["partition"] for e in events) == [2, 5, 6]
    assert plan.planned_bytes < 64 * MiB // 2


def test_bare_file_system_uses_its_bitmap(tmp_path: Path) -> None:
    img = tmp_path / "lv.img"
    make_ext(img, 32 * MiB, sample_files(4))
    events: list[Event] = []
    with open_device(img) as dev:
        layout = read_layout(dev)
        plan = build_read_plan(dev, layout, on_event=events.append)
    assert layout.table == "none"
    assert layout.partitions == (Partition(0, 0, 32 * MiB, "", "whole-device", filesystem="ext4"),)
    assert events == [] and plan.planned_bytes < 12 * MiB  # 4 MiB journal, 2 MiB files, metadata


def test_ntfs_boot_sector_is_not_an_mbr() -> None:
    sector = bytearray(4096)
    sector[3:11] = b"NTFS    "
    sector[510:512] = b"\x55\xaa"
    layout = read_layout(BytesSource(bytes(sector) + bytes(MiB)))
    assert layout.table == "none"


def test_layout_json_is_stable(tmp_path: Path) -> None:
    layout = layout_of(gpt_image(tmp_path)).with_plan({"planned_bytes": 1})
    doc = json.loads(layout.dumps())
    assert doc["format"] == "e3backup-disk-layout" and doc["version"] == 1
    assert set(doc) == {"format", "version", "sector_size", "disk_size", "table", "disk_id",
                        "table_extents", "partitions", "notes", "plan"}  # fmt: skip
    assert set(doc["partitions"][0]) == {"index", "start", "size", "type", "type_name", "guid", "name",
                                         "filesystem", "bootable", "attributes"}  # fmt: skip
    assert DiskLayout.loads(layout.dumps()) == layout
    doc["future_key"] = "ignored"
    assert DiskLayout.from_json(doc) == layout
    with pytest.raises(LayoutError):
        DiskLayout.from_json({**doc, "version": 99})
    with pytest.raises(LayoutError):
        DiskLayout.from_json({"format": "other"})
