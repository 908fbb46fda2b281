"""USN journal narrowing of NTFS change tracking, on real NTFS volumes made on Linux.

mkntfs makes the volume, ntfs-3g changes files, ntfscp writes ``$Extend\\$UsnJrnl`` with its ``$J``
and ``$Max`` streams (ntfs-3g keeps no journal). The journal's records are laid out as Microsoft's
"USN_RECORD_V2 structure (winioctl.h)" and "USN_RECORD_V3 structure (winioctl.h)" describe them
(``usn.py`` names the offsets); ``$Max`` as "USN_JOURNAL_DATA_V0 structure (winioctl.h)" names its
fields (MaximumSize, AllocationDelta, UsnJournalID, LowestValidUsn). Every scan that uses the
journal is compared with the MFT compare of the same volume: the answer must be the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e3backup.sources.changetrack import FsDigests, Method, TrackingState, track_partition
from e3backup.sources.changetrack import ntfs as ntfs_track
from e3backup.sources.changetrack.scan import FsScan
from e3backup.sources.changetrack.usn import named_records
from e3backup.sources.device import open_device
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import Partition

from .diskimages import MiB, make_ntfs, ntfs_file_clusters, random_bytes, run

SIZE = 24 * MiB
JOURNAL_ID = 0x01DB45F0C2A81234  # a FILETIME, as Windows makes them
FILES = {f"f{i}.bin": random_bytes(20_000 + 3_000 * i, 40 + i) for i in range(8)}
REASON_OVERWRITE, REASON_EXTEND, REASON_CREATE, REASON_DELETE, REASON_RENAME_NEW = 0x1, 0x2, 0x100, 0x200, 0x2000


def usn_v2(usn: int, record: int, reason: int, name: str, parent: int = 5) -> bytes:
    """USN_RECORD_V2: RecordLength, MajorVersion 2, MinorVersion, FileReferenceNumber (record in the
    low 48 bits, sequence above), ParentFileReferenceNumber, Usn, TimeStamp, Reason, SourceInfo,
    SecurityId, FileAttributes, FileNameLength, FileNameOffset (60), FileName; 8-byte aligned."""
    encoded = name.encode("utf-16-le")
    length = (60 + len(encoded) + 7) // 8 * 8
    head = struct.pack(
        "<IHHQQqqIIIIHH", length, 2, 0, (1 << 48) | record, parent, usn, 0, reason, 0, 0, 0x20, len(encoded), 60
    )
    return (head + encoded).ljust(length, b"\0")


def usn_v3(usn: int, record: int, reason: int, name: str, parent: int = 5) -> bytes:
    """USN_RECORD_V3: as V2 with 128-bit FileReferenceNumber and ParentFileReferenceNumber
    (FILE_ID_128; NTFS's 64-bit reference in the low half); FileNameOffset 76."""
    encoded = name.encode("utf-16-le")
    length = (76 + len(encoded) + 7) // 8 * 8
    head = struct.pack(
        "<IHHQQQQqqIIIIHH", length, 3, 0, (1 << 48) | record, 0, parent, 0, usn, 0, reason, 0, 0, 0x20,
        len(encoded), 76,
    )  # fmt: skip
    return (head + encoded).ljust(length, b"\0")


def max_stream(journal_id: int, lowest_valid_usn: int) -> bytes:
    return struct.pack("<QQQq", 32 * MiB, 8 * MiB, journal_id, lowest_valid_usn)


class Journal:
    """Builds ``$J`` record by record (USNs are offsets in it) and writes it with ntfscp."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)

    def add(self, make: object, record: int, reason: int, name: str) -> None:
        assert callable(make)
        self.data += make(len(self.data), record, reason, name)

    def next_page(self) -> None:
        self.data += bytes(-len(self.data) % 4096)  # Windows zero-fills the rest of a page

    def write(self, img: Path, journal_id: int = JOURNAL_ID, lowest: int = 0) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            j, m = Path(tmp) / "j", Path(tmp) / "max"
            j.write_bytes(bytes(self.data))
            m.write_bytes(max_stream(journal_id, lowest))
            run("ntfscp", "-f", "-N", "$J", img, j, "/$Extend/$UsnJrnl")
            run("ntfscp", "-f", "-N", "$Max", img, m, "/$Extend/$UsnJrnl")


@contextlib.contextmanager
def ntfs3g(img: Path) -> Iterator[Path]:
    """ntfs-3g in the foreground: once it exits after umount, everything is on the image."""
    with tempfile.TemporaryDirectory(prefix="e3mnt-") as mnt:
        proc = subprocess.Popen(["ntfs-3g", "-o", "no_detach,noatime", str(img), mnt])
        try:
            deadline = time.monotonic() + 30
            while not os.path.ismount(mnt):
                assert proc.poll() is None and time.monotonic() < deadline, "ntfs-3g did not mount"
                time.sleep(0.02)  # polling a condition, not timing anything
            yield Path(mnt)
        finally:
            subprocess.run(["umount", mnt], check=False)
            proc.wait(60)


@dataclass
class Base:
    img: Path
    records: dict[str, int]  # file name -> MFT record number
    journal: Journal
    parent: FsScan


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    if os.geteuid() != 0:
        pytest.skip("needs root (ntfs-3g)")
    img = tmp_path_factory.mktemp("usn") / "ntfs.img"
    make_ntfs(img, SIZE, FILES)
    with ntfs3g(img) as mnt:
        records = {name: os.stat(mnt / name).st_ino for name in FILES}  # ntfs-3g: inode = MFT record
    empty = img.parent / "empty"
    empty.write_bytes(b"")
    run("ntfscp", "-f", img, empty, "/$Extend/$UsnJrnl")
    journal = Journal()
    for name, record in records.items():
        journal.add(usn_v2, record, REASON_CREATE, name)
    journal.next_page()
    journal.write(img)
    return Base(img, records, journal, _scan(img))


def _scan(img: Path, parent: FsScan | None = None, use_journal: bool = True) -> FsScan:
    with open_device(img) as dev:
        if parent is None:
            return ntfs_track.scan(dev)
        return ntfs_track.scan(dev, parent.digests, parent.journal if use_journal else None)


def _copy(base: Base, tmp_path: Path) -> Path:
    img = tmp_path / "ntfs.img"
    shutil.copyfile(base.img, img)
    return img


def _same_answer(img: Path, parent: FsScan) -> tuple[FsScan, FsScan]:
    """The scan with the journal and the MFT compare alone: they must agree."""
    with_journal, mft = _scan(img, parent), _scan(img, parent, use_journal=False)
    assert mft.usn is None
    assert with_journal.changed == mft.changed and with_journal.metadata == mft.metadata
    assert (with_journal.digests == mft.digests).all() and with_journal.journal == mft.journal
    return with_journal, mft


def test_the_journal_names_the_changes_and_gives_the_mft_compare_answer(base: Base, tmp_path: Path) -> None:
    img = _copy(base, tmp_path)
    assert base.parent.journal == {"journal_id": f"{JOURNAL_ID:016X}", "next_usn": 4096}
    with ntfs3g(img) as mnt:
        with open(mnt / "f1.bin", "r+b") as f:  # overwrite in place
            f.seek(5_000)
            f.write(random_bytes(3_000, 1))
        with open(mnt / "f2.bin", "ab") as f:
            f.write(random_bytes(9_000, 2))
        (mnt / "new.bin").write_bytes(random_bytes(30_000, 3))
        new = os.stat(mnt / "new.bin").st_ino
        (mnt / "f3.bin").unlink()
        (mnt / "f4.bin").rename(mnt / "g4.bin")
    r = base.records
    journal = Journal(base.journal.data)
    journal.add(usn_v2, r["f1.bin"], REASON_OVERWRITE, "f1.bin")
    journal.add(usn_v2, r["f2.bin"], REASON_EXTEND, "f2.bin")
    journal.add(usn_v3, new, REASON_CREATE, "new.bin")
    journal.add(usn_v3, r["f3.bin"], REASON_DELETE, "f3.bin")
    journal.add(usn_v3, r["f4.bin"], REASON_RENAME_NEW, "g4.bin")
    journal.write(img)

    got, mft = _same_answer(img, base.parent)
    assert got.usn is not None and "from USN 4096" in got.usn and "5 records named" in got.usn
    assert got.usn_unused is None and got.records_changed == mft.records_changed
    assert got.journal == {"journal_id": f"{JOURNAL_ID:016X}", "next_usn": len(journal.data)}
    for name in ("f1.bin", "f2.bin", "new.bin"):
        clusters = ExtentList((c.offset * 4096, c.length * 4096) for c in ntfs_file_clusters(img, name))
        assert clusters and not (clusters - got.changed), f"{name}'s data must be read"
    untouched = ExtentList((c.offset * 4096, c.length * 4096) for c in ntfs_file_clusters(img, "f6.bin"))
    assert not (untouched & got.to_read)

    # through the tracker: the method and reason say so, the state keeps the position
    part = Partition(1, 0, SIZE, "X", filesystem="ntfs")
    parent = FsDigests(1, "ntfs", dict(base.parent.identity), 1.0, base.parent.digests, base.parent.journal)
    stored = TrackingState.decode(TrackingState((parent,)).encode()).partitions[0]
    assert stored.journal == base.parent.journal
    with open_device(img) as dev:
        tracked = track_partition(dev, part, stored, None, 2.0)
    assert tracked.method is Method.NTFS_USN and "USN journal" in tracked.reason
    assert tracked.digests is not None and tracked.digests.journal == got.journal

    # nothing changed since: the journal names nothing, nothing is read
    quiet, _ = _same_answer(img, got)
    assert quiet.usn is not None and "0 records named" in quiet.usn and not quiet.changed


def test_a_change_the_journal_does_not_name_makes_it_an_mft_compare(base: Base, tmp_path: Path) -> None:
    img = _copy(base, tmp_path)
    with ntfs3g(img) as mnt, open(mnt / "f5.bin", "r+b") as f:
        f.write(random_bytes(4_000, 5))
    journal = Journal(base.journal.data)
    journal.add(usn_v2, base.records["f6.bin"], REASON_OVERWRITE, "f6.bin")  # names another file only
    journal.write(img)
    got, _ = _same_answer(img, base.parent)
    assert got.usn is None and got.usn_unused is not None
    assert f"does not name MFT record {base.records['f5.bin']}" in got.usn_unused
    f5 = ExtentList((c.offset * 4096, c.length * 4096) for c in ntfs_file_clusters(img, "f5.bin"))
    assert f5 and not (f5 - got.changed)
    part = Partition(1, 0, SIZE, "X", filesystem="ntfs")
    parent = FsDigests(1, "ntfs", dict(base.parent.identity), 1.0, base.parent.digests, base.parent.journal)
    with open_device(img) as dev:
        tracked = track_partition(dev, part, parent, None, 2.0)
    assert tracked.method is Method.NTFS_MFT and "USN journal not used: the USN journal does not name" in tracked.reason


@pytest.mark.parametrize(
    ("journal_id", "lowest", "why"),
    [
        (JOURNAL_ID + 1, 0, "the USN journal was recreated"),
        (JOURNAL_ID, 8192, "the USN journal wrapped (records from USN 4096 to 8192 were cut off)"),
    ],
    ids=["recreated", "wrapped"],
)
def test_a_recreated_or_wrapped_journal_is_not_used(
    base: Base, tmp_path: Path, journal_id: int, lowest: int, why: str
) -> None:
    img = _copy(base, tmp_path)
    with ntfs3g(img) as mnt, open(mnt / "f7.bin", "r+b") as f:
        f.write(random_bytes(4_000, 7))
    journal = Journal(base.journal.data)
    journal.next_page()
    journal.data += bytes(4096)
    journal.add(usn_v2, base.records["f7.bin"], REASON_OVERWRITE, "f7.bin")
    journal.write(img, journal_id, lowest)
    got, _ = _same_answer(img, base.parent)
    assert got.usn is None and got.usn_unused is not None and got.usn_unused.startswith(why)


def test_usn_records_parse_by_version_and_page_padding() -> None:
    data = bytearray(usn_v2(0, 70, REASON_CREATE, "a"))
    data += bytes(4096 - len(data))
    data += usn_v3(4096, 71, REASON_OVERWRITE, "b")
    assert named_records(bytes(data), 0) == {70, 71}
    assert named_records(bytes(data[4096:]), 4096) == {71}
    with pytest.raises(LayoutError, match="says USN"):
        named_records(bytes(data[4096:]), 8192)  # read from the wrong place
    bad = bytearray(data)
    struct.pack_into("<H", bad, 4, 9)
    with pytest.raises(LayoutError, match="version 9"):
        named_records(bytes(bad), 0)
