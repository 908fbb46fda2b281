"""The Windows disk layer on Linux, through ``FakeWin32`` (tests/platform/win32_double.py): IOCTL
codes and structures, sector-aligned reads and the seeds' tail rule, volume bitmap and retrieval
pointer paging. The Microsoft document each structure follows is named at each test."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from e3backup.events import Event, EventCode
from e3backup.platform.windows import ioctl
from e3backup.platform.windows.rawdisk import TAIL_SECTORS, drive_layout, open_raw
from e3backup.platform.windows.volume import file_runs, used_clusters
from e3backup.platform.windows.win32 import ERROR_SECTOR_NOT_FOUND, Win32Error
from e3backup.sources.device import open_device
from e3backup.sources.errors import ReadError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout import ntfs
from e3backup.sources.reader import DeviceReader, ReadPolicy
from tests.platform.win32_double import (
    FakeDevice,
    FakeFile,
    FakeWin32,
    drive_layout_gpt,
    drive_layout_mbr,
    gpt_partition_entry,
    mbr_partition_entry,
)
from tests.sources.diskimages import make_ntfs, ntfs_bitmap

DISK = "\\\\.\\PhysicalDrive1"
MS_BASIC = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
EFI = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def test_ctl_codes_are_winioctl_h_values() -> None:
    """winioctl.h: IOCTL_DISK_GET_LENGTH_INFO 0x0007405C, ..._GET_DRIVE_LAYOUT_EX 0x00070050,
    ..._GET_DRIVE_GEOMETRY_EX 0x000700A0, FSCTL_GET_VOLUME_BITMAP 0x0009006F,
    FSCTL_GET_RETRIEVAL_POINTERS 0x00090073, FSCTL_GET_NTFS_VOLUME_DATA 0x00090064,
    FSCTL_ALLOW_EXTENDED_DASD_IO 0x00090083."""
    assert ioctl.IOCTL_DISK_GET_LENGTH_INFO == 0x0007405C
    assert ioctl.IOCTL_DISK_GET_DRIVE_LAYOUT_EX == 0x00070050
    assert ioctl.IOCTL_DISK_GET_DRIVE_GEOMETRY_EX == 0x000700A0
    assert ioctl.FSCTL_GET_VOLUME_BITMAP == 0x0009006F
    assert ioctl.FSCTL_GET_RETRIEVAL_POINTERS == 0x00090073
    assert ioctl.FSCTL_GET_NTFS_VOLUME_DATA == 0x00090064
    assert ioctl.FSCTL_ALLOW_EXTENDED_DASD_IO == 0x00090083


def test_gpt_drive_layout_parsed() -> None:
    """DRIVE_LAYOUT_INFORMATION_EX / PARTITION_INFORMATION_EX / PARTITION_INFORMATION_GPT
    (learn.microsoft.com, winioctl.h): 48-byte head, 144-byte entries."""
    disk_id = "0F3C8D4A-1B2C-4D5E-8F90-A1B2C3D4E5F6"
    data = drive_layout_gpt(disk_id, [
        gpt_partition_entry(1, 1 << 20, 100 << 20, EFI, "11111111-2222-3333-4444-555555555555", "EFI system partition"),
        gpt_partition_entry(2, 101 << 20, 900 << 20, MS_BASIC, "66666666-7777-8888-9999-AAAAAAAAAAAA", "Basic data"),
    ])
    assert len(data) == 48 + 2 * 144
    layout = ioctl.parse_drive_layout(data)
    assert layout.style == "gpt" and layout.disk_id == disk_id
    assert [(p.number, p.offset, p.length, p.type, p.name) for p in layout.partitions] == [
        (1, 1 << 20, 100 << 20, EFI, "EFI system partition"),
        (2, 101 << 20, 900 << 20, MS_BASIC, "Basic data"),
    ]
    assert layout.partitions[1].partition_id == "66666666-7777-8888-9999-AAAAAAAAAAAA"


def test_mbr_drive_layout_skips_unused_slots() -> None:
    """PARTITION_INFORMATION_MBR: an MBR layout lists four slots; unused ones have type 0
    (PARTITION_ENTRY_UNUSED)."""
    data = drive_layout_mbr(0xA1B2C3D4, [
        mbr_partition_entry(1, 1 << 20, 500 << 20, 0x07, boot=True),
        mbr_partition_entry(0, 0, 0, 0x00),
        mbr_partition_entry(2, 501 << 20, 200 << 20, 0x0C),
        mbr_partition_entry(0, 0, 0, 0x00),
    ])
    layout = ioctl.parse_drive_layout(data)
    assert layout.style == "mbr" and layout.disk_id == "A1B2C3D4"
    assert [(p.number, p.type, p.bootable) for p in layout.partitions] == [(1, "0x07", True), (2, "0x0C", False)]


def test_drive_layout_buffer_grows_on_insufficient_buffer() -> None:
    """IOCTL_DISK_GET_DRIVE_LAYOUT_EX: ERROR_INSUFFICIENT_BUFFER when the buffer cannot hold every
    partition; the caller retries with a larger one."""
    entries = [gpt_partition_entry(i + 1, (i + 1) << 20, 1 << 20, MS_BASIC, str(__import__("uuid").uuid4()), f"p{i}")
               for i in range(200)]
    api = FakeWin32()
    layout_bytes = drive_layout_gpt("0F3C8D4A-1B2C-4D5E-8F90-A1B2C3D4E5F6", entries)
    api.devices[DISK] = FakeDevice(bytes(4096), layout=layout_bytes)
    h = api.open_device(DISK)
    layout = drive_layout(api, h, DISK)
    assert len(layout.partitions) == 200
    assert [c for c in api.calls if c == ("ioctl", ioctl.IOCTL_DISK_GET_DRIVE_LAYOUT_EX)].__len__() == 2


def test_short_structures_are_named() -> None:
    with pytest.raises(ioctl.StructError, match="DRIVE_LAYOUT_INFORMATION_EX"):
        ioctl.parse_drive_layout(bytes(10))
    with pytest.raises(ioctl.StructError, match="RETRIEVAL_POINTERS_BUFFER"):
        ioctl.parse_retrieval_pointers(b"\x05" + bytes(15))  # 5 extents announced, none present


def _disk(size: int = 1 << 20, **kw: object) -> tuple[FakeWin32, bytes]:
    data = random.Random(size).randbytes(size)
    api = FakeWin32()
    api.devices[DISK] = FakeDevice(data, **kw)  # type: ignore[arg-type]
    return api, data


def test_open_raw_takes_size_and_sector_size_from_the_ioctls() -> None:
    """GET_LENGTH_INFORMATION.Length and DISK_GEOMETRY_EX.Geometry.BytesPerSector."""
    api, _ = _disk(1 << 20, sector=4096)
    with open_raw(api, DISK) as dev:
        assert (dev.size, dev.sector_size) == (1 << 20, 4096)
    assert api.handles == {}  # closed


def test_unaligned_reads_read_whole_sectors() -> None:
    """Unbuffered handles take sector multiples only ("File Buffering"); the double refuses the
    rest with ERROR_INVALID_PARAMETER, so a parser's 2-byte read must become a sector read."""
    api, data = _disk()
    with open_raw(api, DISK) as dev:
        assert dev.read_at(510, 2) == data[510:512]
        assert dev.read_at(1000, 5000) == data[1000:6000]
    reads = [c[1] for c in api.calls if c[0] == "read"]
    assert all(off % 512 == 0 and n % 512 == 0 for off, n in reads)  # type: ignore[misc]


def test_sector_not_found_in_the_tail_is_the_end_of_the_device() -> None:
    """The seeds' tail rule: the last sectors a bridge reports but cannot read end the device,
    as zeros and without an event."""
    api, data = _disk(1 << 20)
    api.devices[DISK].reported_size = len(data) + 8 * 512  # 8 unreadable sectors at the end
    events: list[Event] = []
    with open_raw(api, DISK) as dev:
        buf = bytearray(dev.size)
        DeviceReader(dev, ReadPolicy(strict=True), on_event=events.append).read_into(0, buf)
        assert bytes(buf) == data + bytes(8 * 512)
        assert dev.tail_zeroed == 8 * 512
    assert events == []


def test_sector_not_found_mid_stream_is_zero_filled_in_best_effort() -> None:
    api, data = _disk(1 << 20)
    bad = 300 * 512
    api.devices[DISK].bad = {bad}
    events: list[Event] = []
    with open_raw(api, DISK) as dev:
        buf = bytearray(dev.size)
        reader = DeviceReader(dev, ReadPolicy(), on_event=events.append)
        reader.read_into(0, buf)
    assert bytes(buf) == data[:bad] + bytes(512) + data[bad + 512 :]
    assert [(e.code, e.details["offset"], e.details["length"]) for e in events] == [
        (EventCode.DISK_IMAGE_READ_RECOVERED, bad, 512)
    ]
    assert "ERROR_SECTOR_NOT_FOUND" in str(events[0].details["error"])


def test_sector_not_found_mid_stream_fails_in_strict_mode() -> None:
    api, _ = _disk(1 << 20)
    api.devices[DISK].bad = {300 * 512}
    with open_raw(api, DISK) as dev, pytest.raises(ReadError, match="ERROR_SECTOR_NOT_FOUND"):
        DeviceReader(dev, ReadPolicy(strict=True)).read_into(0, bytearray(dev.size))


def test_sector_not_found_just_before_the_tail_window_is_not_the_end() -> None:
    api, _ = _disk(1 << 20)
    dev_bad = (1 << 20) - (TAIL_SECTORS + 1) * 512
    api.devices[DISK].bad = {dev_bad}
    with open_raw(api, DISK) as dev, pytest.raises(Win32Error) as e:
        dev.read_into(dev_bad, bytearray(512))
    assert e.value.code == ERROR_SECTOR_NOT_FOUND


def test_sources_open_device_reads_through_the_seam() -> None:
    api, data = _disk(1 << 20)
    with open_device(DISK, api=api) as dev:
        assert dev.size == len(data) and dev.read_at(4096, 100) == data[4096:4196]


@pytest.fixture(scope="module")
def ntfs_volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """A real NTFS (mkntfs) and its $Bitmap as ntfs-3g reads it."""
    path = tmp_path_factory.mktemp("ntfs") / "vol.img"
    make_ntfs(path, 24 << 20, {"a.bin": random.Random(3).randbytes(700_000), "b.txt": b"x" * 5000})
    return path, path.read_bytes(), ntfs_bitmap(path)


def _runs_of(bitmap: bytes, total: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for lcn in range(total):
        if bitmap[lcn // 8] >> (lcn % 8) & 1:
            if runs and sum(runs[-1]) == lcn:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((lcn, 1))
    return runs


def test_volume_bitmap_paged_with_more_data_matches_ntfs3g_and_our_reader(
    ntfs_volume: tuple[Path, bytes, bytes],
) -> None:
    """FSCTL_GET_VOLUME_BITMAP / VOLUME_BITMAP_BUFFER: with a 64-byte bitmap buffer every page ends
    in ERROR_MORE_DATA with BitmapSize = the clusters left; the runs put together equal the $Bitmap
    ntfs-3g reads, and our own reader's used bytes (the cross-check of a VSS run)."""
    _path, data, bitmap = ntfs_volume
    total = len(data) // 4096
    vol = "\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1"
    api = FakeWin32()
    api.devices[vol] = FakeDevice(data, bitmap=bitmap, total_clusters=total)
    h = api.open_device(vol)
    runs = used_clusters(api, h, vol, buffer=16 + 64)
    pages = [c for c in api.calls if c == ("ioctl", ioctl.FSCTL_GET_VOLUME_BITMAP)]
    assert len(pages) == -(-total // 512) > 3
    assert runs == _runs_of(bitmap, total)
    from e3backup.sources.device import BytesSource

    ours = ntfs.used_extents(BytesSource(data))
    assert ExtentList((lcn * 4096, n * 4096) for lcn, n in runs) == ours


def test_retrieval_pointers_paged_with_sparse_runs() -> None:
    """FSCTL_GET_RETRIEVAL_POINTERS / RETRIEVAL_POINTERS_BUFFER: {NextVcn, Lcn} extents, Lcn -1 for
    a hole; ERROR_MORE_DATA pages on from the last NextVcn; ERROR_HANDLE_EOF for a file without
    clusters."""
    api = FakeWin32()
    path = "\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy1\\pagefile.sys"
    api.files[path] = FakeFile([(10, 100), (15, -1), (40, 500), (41, 900), (60, 1000)])
    api.files[path + ".empty"] = FakeFile([])
    h = api.open_device(path)
    orig = api.device_io_control

    def small(handle: int, code: int, in_buffer: bytes, out_size: int) -> tuple[int, bytes]:
        return orig(handle, code, in_buffer, 16 + 2 * 16)  # two extents per answer

    api.device_io_control = small  # type: ignore[method-assign]
    assert file_runs(api, h, path) == [(0, 10, 100), (10, 5, -1), (15, 25, 500), (40, 1, 900), (41, 19, 1000)]
    assert file_runs(api, api.open_device(path + ".empty")) == []
