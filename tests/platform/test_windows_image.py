"""A disk image backup of a Windows volume on Linux: the shared engine, on a real NTFS (mkntfs +
ntfscp), read through the Windows layer's doubles (VSS via FakePowerShell, the shadow copy via
FakeWin32), judged by the real restic. Only the OS calls are doubled; read plans, chunking and the
repository are the real ones."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.events import Event, EventCode
from e3backup.platform.windows.vss import Journal, ShadowCopies
from e3backup.repo import Repository
from e3backup.sources.device import open_device
from e3backup.sources.layout.read import read_layout
from e3backup.sources.snapshot.vss import VssSnapshotProvider
from e3backup.sources.volume_hints import check_layout
from e3backup.store import LocalStore
from tests.helpers import PASSWORD, restic
from tests.platform.win32_double import (
    FakeDevice,
    FakeFile,
    FakePowerShell,
    FakeWin32,
    drive_layout_gpt,
    gpt_partition_entry,
)
from tests.sources.diskimages import make_ntfs, ntfs_bitmap, ntfs_file_clusters

CLUSTER = 4096


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes, list[tuple[int, int]]]:
    path = tmp_path_factory.mktemp("winvol") / "c.img"
    rnd = random.Random(5)
    make_ntfs(path, 32 << 20, {"Windows.bin": rnd.randbytes(2_000_000), "pagefile.sys": rnd.randbytes(3_000_000)})
    runs = [(e.offset, e.length) for e in ntfs_file_clusters(path, "pagefile.sys")]
    return path.read_bytes(), ntfs_bitmap(path), runs


def _backup(tmp_path: Path, data: bytes, bitmap: bytes, page_runs: list[tuple[int, int]]) -> tuple[
    Path, FakePowerShell, list[Event]
]:
    shell, api = FakePowerShell(), FakeWin32()
    shadows = ShadowCopies(shell, Journal(tmp_path / "journal.json"))
    real_create = shadows.create

    def create(volume: str) -> object:  # the new shadow copy's device serves the volume's bytes
        shadow = real_create(volume)
        api.devices[shadow.device_object] = FakeDevice(data, bitmap=bitmap, total_clusters=len(data) // CLUSTER)
        vcn, extents = 0, []
        for lcn, n in page_runs:
            vcn += n
            extents.append((vcn, lcn))
        api.files[shadow.device_object + "\\pagefile.sys"] = FakeFile(extents)
        return shadow

    shadows.create = create  # type: ignore[method-assign]
    repo_path = tmp_path / "repo"
    if not repo_path.exists():
        Repository.init(LocalStore(repo_path), PASSWORD.encode()).close()
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    events: list[Event] = []
    try:
        run_image_backup(repo, ImageBackupOptions(source="C:", host="winhost"), on_event=events.append,
                         provider=VssSnapshotProvider(shadows, api, events.append),
                         opener=lambda p: open_device(p, api=api))
    finally:
        repo.close()
    assert shell.shadows == {} and api.handles == {}  # shadow copy deleted, every handle closed
    return repo_path, shell, events


def test_volume_image_through_vss_skips_the_page_file(
    tmp_path: Path, volume: tuple[bytes, bytes, list[tuple[int, int]]]
) -> None:
    data, bitmap, page_runs = volume
    repo_path, _shell, events = _backup(tmp_path, data, bitmap, page_runs)
    codes = [e.code for e in events]
    assert EventCode.VSS_SNAPSHOT_CREATED in codes and EventCode.DISK_IMAGE_STREAM_COMPLETED in codes
    assert EventCode.DISK_IMAGE_BITMAP_MISMATCH not in codes  # Windows' bitmap and ours agree
    skipped = next(e for e in events if e.code is EventCode.DISK_IMAGE_FILES_SKIPPED)
    assert skipped.details["files"] == ["pagefile.sys"]
    assert skipped.details["bytes"] == sum(n for _, n in page_runs) * CLUSTER
    restic(repo_path, "check", "--read-data")
    image = restic(repo_path, "dump", "latest", "/C.img").stdout
    expected = bytearray(data)
    for lcn, n in page_runs:
        expected[lcn * CLUSTER : (lcn + n) * CLUSTER] = bytes(n * CLUSTER)
    used = bytearray(len(data))  # compare the clusters the volume uses (free space reads as zeros)
    for lcn in range(len(data) // CLUSTER):
        if bitmap[lcn // 8] >> (lcn % 8) & 1:
            used[lcn * CLUSTER : (lcn + 1) * CLUSTER] = b"\1" * CLUSTER
    assert len(image) == len(data)
    assert all(image[i : i + CLUSTER] == expected[i : i + CLUSTER]
               for i in range(0, len(data), CLUSTER) if used[i])
    assert image.find(b"\0" * CLUSTER) >= 0

    # the next run: a new shadow copy, NTFS change tracking on it, nothing changed is read again
    _repo, _shell, again = _backup(tmp_path, data, bitmap, page_runs)
    done = next(e for e in again if e.code is EventCode.DISK_IMAGE_STREAM_COMPLETED).details
    assert done["full"] is False and done["bytes_read"] < len(data) // 4
    assert EventCode.DISK_IMAGE_CHANGE_TRACKING in [e.code for e in again]
    assert restic(repo_path, "dump", "latest", "/C.img").stdout == image


def test_clusters_windows_calls_used_are_read_too(
    tmp_path: Path, volume: tuple[bytes, bytes, list[tuple[int, int]]]
) -> None:
    """A cluster NTFS's FSCTL bitmap marks used but our $Bitmap reader does not (the two read the
    same shadow copy and should agree) is read anyway, and said."""
    data, bitmap, _ = volume
    free = next(lcn for lcn in range(len(data) // CLUSTER - 1, 0, -1) if not bitmap[lcn // 8] >> (lcn % 8) & 1)
    marked = bytearray(bitmap)
    marked[free // 8] |= 1 << (free % 8)
    stale = bytearray(data)
    stale[free * CLUSTER : (free + 1) * CLUSTER] = b"W" * CLUSTER  # data only Windows knows is live
    repo_path, _shell, events = _backup(tmp_path, bytes(stale), bytes(marked), [])
    mismatch = next(e for e in events if e.code is EventCode.DISK_IMAGE_BITMAP_MISMATCH)
    assert mismatch.details["missing_bytes"] == CLUSTER
    image = restic(repo_path, "dump", "latest", "/C.img").stdout
    assert image[free * CLUSTER : (free + 1) * CLUSTER] == b"W" * CLUSTER


def test_physical_disk_is_read_directly_by_layout_and_bitmaps(tmp_path: Path) -> None:
    """``\\\\.\\PhysicalDrive1`` of a real GPT disk (ext4, NTFS, an unknown file system): no shadow
    copy (DISK_IMAGE_SNAPSHOT_NONE, as the seeds stream disks directly), the plan from the layout,
    the file systems' bitmaps and the GPT tail, read through the raw-device double."""
    from tests.sources.diskimages import build_gpt_disk

    disk = build_gpt_disk(tmp_path, with_stale=False)
    data = disk.path.read_bytes()
    api = FakeWin32()
    parts = [(disk.ext4_start, disk.ext4_size), (disk.ntfs_start, disk.ntfs_size), (disk.raw_start, disk.raw_size)]
    entries = [gpt_partition_entry(i + 1, off, size, "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", str(uuid.uuid4()), f"p{i}")
               for i, (off, size) in enumerate(parts)]
    layout = drive_layout_gpt("0F3C8D4A-1B2C-4D5E-8F90-A1B2C3D4E5F6", entries)
    api.devices["\\\\.\\PhysicalDrive1"] = FakeDevice(data, layout=layout)
    api.devices["\\\\.\\PhysicalDrive2"] = FakeDevice(data, layout=drive_layout_gpt(
        "0F3C8D4A-1B2C-4D5E-8F90-A1B2C3D4E5F6", entries[:2]))  # Windows sees one partition less
    repo_path = tmp_path / "repo"
    Repository.init(LocalStore(repo_path), PASSWORD.encode()).close()
    repo = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    events: list[Event] = []
    try:
        result = run_image_backup(repo, ImageBackupOptions(source="\\\\.\\PhysicalDrive1", host="winhost"),
                                  on_event=events.append, opener=lambda p: open_device(p, api=api))
    finally:
        repo.close()
    codes = [e.code for e in events]
    assert EventCode.DISK_IMAGE_SNAPSHOT_NONE in codes and EventCode.VSS_SNAPSHOT_CREATED not in codes
    assert EventCode.DISK_IMAGE_LAYOUT_MISMATCH not in codes  # IOCTL_DISK_GET_DRIVE_LAYOUT_EX agrees
    assert result.plan_bytes < len(data) // 2  # used blocks only, not the whole disk
    image = restic(repo_path, "dump", "latest", "/PhysicalDrive1.img").stdout
    assert image[:34 * 512] == data[:34 * 512] and image[-33 * 512 :] == data[-33 * 512 :]  # both GPTs
    for name, content in disk.ntfs_files.items():
        assert content in image, name  # small files: contiguous in a fresh NTFS
    assert api.handles == {}
    mismatch: list[Event] = []
    with open_device("\\\\.\\PhysicalDrive2", api=api) as dev:
        check_layout(read_layout(dev), dev, mismatch.append)
    assert [e.code for e in mismatch] == [EventCode.DISK_IMAGE_LAYOUT_MISMATCH]
    assert len(mismatch[0].details["table"]) == 3 and len(mismatch[0].details["windows"]) == 2
