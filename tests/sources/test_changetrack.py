"""Change tracking's parts: digests, the stored state, NTFS and ext4 scans on real volumes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e3backup.events import EventCode
from e3backup.sources.changetrack import (
    FsDigests,
    MetaChunks,
    Method,
    TrackingState,
    TrackingStateError,
    track_partition,
)
from e3backup.sources.changetrack import ext4 as ext4_track
from e3backup.sources.changetrack import ntfs as ntfs_track
from e3backup.sources.changetrack.digest import Digests, changed_records, record_digests
from e3backup.sources.changetrack.scan import FsScan
from e3backup.sources.changetrack.track import track_disk
from e3backup.sources.device import BytesSource, open_device
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.ext4 import read_group_descs, read_superblock
from e3backup.sources.layout.model import DiskLayout, Partition
from e3backup.sources.layout.ntfs import apply_fixups, read_boot_sector

from .diskimages import (
    MiB,
    debugfs_blocks,
    loop_device,
    make_ext,
    make_ntfs,
    mounted,
    ntfs_file_clusters,
    random_bytes,
    run,
)
from .faultyfuse import faulty_image

FILES = {"a.bin": random_bytes(300_000, 1), "b.bin": random_bytes(500_000, 2), "small.txt": b"hi\n"}


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mount)")


# digests --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=64, max_size=64), st.integers(0, 7), st.integers(1, (1 << 64) - 1))
def test_a_one_word_change_always_changes_the_digest(record: bytes, word: int, delta: int) -> None:
    rows = np.frombuffer(record, dtype=np.uint8).reshape(1, 64)
    words = rows.copy().view("<u8")
    words[0, word] = (int(words[0, word]) + delta) % (1 << 64)
    before, after = record_digests(rows), record_digests(words.view(np.uint8))
    assert before[0] != after[0]


def test_masked_bytes_do_not_count_and_others_do() -> None:
    rows = np.frombuffer(random_bytes(16 * 256, 3), dtype=np.uint8).reshape(16, 256).copy()
    base = record_digests(rows, [(8, 12)])
    rows[4, 9] ^= 0xFF  # inside the mask (an inode's atime)
    rows[7, 12] ^= 0x01  # just outside it
    after = record_digests(rows, [(8, 12)])
    assert changed_records(base, after).tolist() == [7]


def test_records_the_parent_did_not_have_count_as_changed() -> None:
    a = np.arange(5, dtype=np.uint64)
    b = np.concatenate([a, np.array([9, 9], dtype=np.uint64)])
    b[1] = 77
    assert changed_records(a, b).tolist() == [1, 5, 6]
    assert changed_records(b, a).tolist() == [1]


# the stored state ------------------------------------------------------------------------------


def test_state_round_trip_costs_eight_bytes_a_record() -> None:
    parts = (
        FsDigests(2, "ntfs", {"serial": "AB", "cluster_size": 4096}, 1.5, np.arange(1000, dtype=np.uint64)),
        FsDigests(1, "ext4", {"uuid": "00ff"}, 2.0, np.array([1 << 63, 5], dtype=np.uint64)),
    )
    state = TrackingState(parts, since_verify=3)
    raw = state.encode()
    back = TrackingState.decode(raw)
    assert back.since_verify == 3
    assert [(p.partition, p.filesystem, p.identity, p.captured_at) for p in back.partitions] == [
        (p.partition, p.filesystem, p.identity, p.captured_at) for p in parts
    ]
    for a, b in zip(back.partitions, parts, strict=True):
        assert a.digests.tolist() == b.digests.tolist()
    header_len = int.from_bytes(raw[6:10], "little")
    assert len(raw) - 10 - header_len == 8 * 1002
    assert back.for_partition(1) is not None and back.for_partition(3) is None


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda raw: b"XXXX" + raw[4:], "bad magic"),
        (lambda raw: raw[:-3], "truncated"),
        (lambda raw: raw[:4] + b"\x09\x00" + raw[6:], "newer"),
        (lambda raw: raw[:10] + b"[" + raw[11:], "unreadable"),
    ],
)
def test_state_refuses_damaged_input(mutate: Callable[[bytes], bytes], match: str) -> None:
    raw = TrackingState((FsDigests(1, "ext4", {}, 0.0, np.ones(4, dtype=np.uint64)),)).encode()
    with pytest.raises(TrackingStateError, match=match):
        TrackingState.decode(mutate(raw))


def test_state_keeps_the_chunk_digests_and_reads_version_1() -> None:
    parts = (FsDigests(1, "ext4", {"uuid": "00ff"}, 2.0, np.arange(3, dtype=np.uint64)),)
    meta = {7: b"\x01" * 16, 0: b"\x02" * 16, 1 << 40: b"\x03" * 16}
    raw = TrackingState(parts, 2, 65536, meta).encode()
    back = TrackingState.decode(raw)
    assert (back.chunk_size, dict(back.meta_chunks), back.since_verify) == (65536, meta, 2)
    header_len = int.from_bytes(raw[6:10], "little")
    assert len(raw) - 10 - header_len == 8 * 3 + 24 * 3  # 24 bytes a chunk digest
    with pytest.raises(TrackingStateError, match="truncated"):
        TrackingState.decode(raw[:-1])
    # a state written before the chunk digests (version 1): no digests, so metadata is read
    part = {"captured_at": 2.0, "filesystem": "ext4", "identity": {}, "partition": 1, "records": 3}
    v1_header = json.dumps({"partitions": [part], "since_verify": 0}).encode()
    v1 = b"E3CT" + (1).to_bytes(2, "little") + len(v1_header).to_bytes(4, "little") + v1_header + bytes(24)
    old = TrackingState.decode(v1)
    assert old.meta_chunks == {} and old.chunk_size == 0 and len(old.partitions[0].digests) == 3
    # version 2 hashed every metadata byte: its chunk digests are not comparable, so none is kept
    v2 = TrackingState.decode(raw[:4] + (2).to_bytes(2, "little") + raw[6:])
    assert v2.meta_chunks == {} and v2.chunk_size == 65536 and v2.partitions[0].digests.tolist() == [0, 1, 2]


def test_chunk_digests_cover_the_metadata_bytes_and_their_places() -> None:
    cs = 4096
    disk = bytearray(random_bytes(4 * cs, 9))
    metadata = ExtentList([(100, 50), (cs - 10, 30), (3 * cs, cs)])  # the second straddles chunks 0-1
    meta = MetaChunks.of(metadata, cs)
    assert dict(meta.ranges) == {0: ((100, 50), (cs - 10, 10)), 1: ((0, 20),), 3: ((0, cs),)}
    assert meta.chunks() == ExtentList([(0, 2), (3, 1)])

    def digests(data: bytes | bytearray, m: MetaChunks = meta) -> dict[int, bytes]:
        got = m.digest_source(BytesSource(bytes(data)), range(4))
        for i in range(4):  # from the stored chunk or from the source: the same digest
            assert m.digest_chunk(i, data[i * cs : (i + 1) * cs]) == got.get(i)
        return got

    before = digests(disk)
    assert set(before) == {0, 1, 3} and all(len(d) == 16 for d in before.values())
    disk[2000] ^= 1  # not metadata: same digests
    disk[2 * cs + 5] ^= 1
    assert digests(disk) == before
    disk[cs + 19] ^= 1  # the last metadata byte of chunk 1
    after = digests(disk)
    assert after[1] != before[1] and after[0] == before[0] and after[3] == before[3]
    moved = MetaChunks.of(ExtentList([(101, 50), (cs - 10, 30), (3 * cs, cs)]), cs)
    assert digests(disk, moved)[0] != after[0]  # same chunk, other ranges: another digest


def test_chunk_digests_of_mostly_zero_metadata_see_every_byte_and_place() -> None:
    """All-zero 4 KiB pieces are left out of the hash (a map says which): a byte set in a zero
    piece, data moved into a zero piece, and a changed short tail each change the digest."""
    cs = 16 * 4096
    disk = bytearray(cs)
    disk[4096 : 2 * 4096] = random_bytes(4096, 3)  # piece 1 holds data, the rest is zeros
    meta = MetaChunks.of(ExtentList([(0, cs - 100)]), cs)  # a 3996-byte tail after 15 pieces

    def digest(data: bytearray) -> bytes:
        got = meta.digest_source(BytesSource(bytes(data)), [0])[0]
        assert meta.digest_chunk(0, data) == got
        return got

    before = digest(disk)
    assert digest(bytearray(disk)) == before
    seen = {before}
    for change in (
        lambda d: d.__setitem__(9 * 4096 + 7, 1),  # a byte in a zero piece
        lambda d: d.__setitem__(slice(4096, 3 * 4096), bytes(4096) + d[4096 : 2 * 4096]),  # moved on
        lambda d: d.__setitem__(cs - 101, 1),  # the tail
    ):
        changed = bytearray(disk)
        change(changed)
        seen.add(digest(changed))
    assert len(seen) == 4
    disk[cs - 50] = 1  # past the metadata: no change
    assert digest(disk) == before


# NTFS ------------------------------------------------------------------------------------------


@pytest.fixture()
def ntfs_volume(tmp_path: Path) -> Path:
    img = tmp_path / "ntfs.img"
    make_ntfs(img, 32 * MiB, FILES)
    return img


def _scan_ntfs(img: Path, parent: Digests | None = None) -> FsScan:
    with open_device(img) as dev:
        return ntfs_track.scan(dev, parent)


def test_ntfs_overwrite_in_place_maps_exactly_the_changed_file(ntfs_volume: Path) -> None:
    _need_root()
    first = _scan_ntfs(ntfs_volume)
    assert not first.compared and not first.changed
    cs = 4096
    a = ExtentList((c.offset * cs, c.length * cs) for c in ntfs_file_clusters(ntfs_volume, "a.bin"))
    b = ExtentList((c.offset * cs, c.length * cs) for c in ntfs_file_clusters(ntfs_volume, "b.bin"))
    mft = ExtentList((c.offset * cs, c.length * cs) for c in ntfs_file_clusters(ntfs_volume, "$MFT"))
    logfile = ExtentList((c.offset * cs, c.length * cs) for c in ntfs_file_clusters(ntfs_volume, "$LogFile"))
    with loop_device(ntfs_volume) as dev, mounted(dev, "ntfs-3g") as mnt, open(mnt / "a.bin", "r+b") as f:
        f.seek(200_000)
        f.write(b"changed!" * 100)
    second = _scan_ntfs(ntfs_volume, first.digests)
    assert second.compared
    assert a and not (a - second.changed)
    assert not (b & second.to_read), "an unchanged file's data must not be read"
    assert not (mft - second.metadata) and not (logfile - second.metadata)
    assert second.records_changed < 10
    third = _scan_ntfs(ntfs_volume, second.digests)
    assert third.records_changed == 0 and not third.changed


def test_ntfs_identity_change_after_reformat(ntfs_volume: Path, tmp_path: Path) -> None:
    part = Partition(1, 0, 32 * MiB, "X", filesystem="ntfs")
    with open_device(ntfs_volume) as dev:
        before = track_partition(dev, part, None, "no parent", 1.0)
    assert before.digests is not None and before.method is Method.NONE
    make_ntfs(ntfs_volume, 32 * MiB, FILES)
    # mkntfs seeds its serial number from the clock (same second, same serial); Windows' format
    # picks a random one: give the new volume its own, in both boot sectors
    with open(ntfs_volume, "r+b") as f:
        for off in (0x48, 32 * MiB - 512 + 0x48):
            f.seek(off)
            f.write(b"\x5a" * 8)
    with open_device(ntfs_volume) as dev:
        after = track_partition(dev, part, before.digests, None, 2.0)
    assert after.to_read is None and after.method is Method.NONE
    assert "identity changed" in after.reason and "serial" in after.reason
    with open_device(ntfs_volume) as dev:
        same = track_partition(dev, part, after.digests, None, 3.0)
    assert same.method is Method.NTFS_MFT and same.to_read is not None and same.records_changed == 0


def test_ntfs_unreadable_mft_falls_back_with_the_reason(ntfs_volume: Path) -> None:
    data = bytearray(ntfs_volume.read_bytes())
    with open_device(ntfs_volume) as dev:
        boot_mft = ntfs_track.identity(dev)["mft_lcn"]
        parent = track_partition(dev, Partition(1, 0, len(data), "X", filesystem="ntfs"), None, "x", 1.0).digests
    off = int(boot_mft) * 4096
    data[off : off + 4] = b"BAAD"
    got = track_partition(
        BytesSource(bytes(data)), Partition(1, 0, len(data), "X", filesystem="ntfs"), parent, None, 2.0
    )
    assert got.to_read is None and got.reason.startswith("unreadable MFT") and "bad magic" in got.reason


# ext4 ------------------------------------------------------------------------------------------


@pytest.fixture()
def ext_volume(tmp_path: Path) -> Path:
    img = tmp_path / "ext.img"
    make_ext(img, 32 * MiB, FILES, options=("-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0"))
    return img


def test_ext4_overwrite_in_place_maps_exactly_the_changed_file(ext_volume: Path) -> None:
    _need_root()
    with open_device(ext_volume) as dev:
        first = ext4_track.scan(dev)
    # as if the parent had been scanned after every timestamp here: only the digests decide
    # (the guard for one-second timestamps would count every file made in the last seconds)
    captured = time.time() + 5
    a = ExtentList((c.offset * 4096, c.length * 4096) for c in debugfs_blocks(ext_volume, "a.bin"))
    b = ExtentList((c.offset * 4096, c.length * 4096) for c in debugfs_blocks(ext_volume, "b.bin"))
    journal_blocks = run("debugfs", "-R", "blocks <8>", ext_volume).split()
    journal = ExtentList((int(blk) * 4096, 4096) for blk in journal_blocks)
    with loop_device(ext_volume) as loop, mounted(loop, "ext4") as mnt, open(mnt / "a.bin", "r+b") as f:
        f.seek(200_000)
        f.write(b"changed!" * 100)
    with open_device(ext_volume) as dev:
        second = ext4_track.scan(dev, first.digests, captured)
    assert not (a - second.changed)
    assert not (b & second.to_read), "an unchanged file's data must not be read"
    assert journal and not (journal - second.metadata)
    with open_device(ext_volume) as dev:
        third = ext4_track.scan(dev, second.digests, captured)
    assert third.records_changed == 0 and not third.changed


def test_ext4_reformat_and_resize_change_identity(ext_volume: Path) -> None:
    with open_device(ext_volume) as dev:
        before = ext4_track.identity(dev)
    subprocess.run(["resize2fs", str(ext_volume), "24M"], capture_output=True, check=True)
    with open_device(ext_volume) as dev:
        resized = ext4_track.identity(dev)
    assert resized["uuid"] == before["uuid"] and resized["blocks_count"] != before["blocks_count"]
    make_ext(ext_volume, 32 * MiB, FILES, options=("-b", "4096"))
    with open_device(ext_volume) as dev:
        assert ext4_track.identity(dev)["uuid"] != before["uuid"]


# the disk ----------------------------------------------------------------------------------------


def test_disk_map_keeps_untracked_partitions_whole_and_says_why(ntfs_volume: Path) -> None:
    size = 48 * MiB
    data = bytearray(size)
    data[MiB : 33 * MiB] = ntfs_volume.read_bytes()
    data[40 * MiB : 41 * MiB] = random_bytes(MiB, 4)
    layout = DiskLayout(
        512,
        size,
        "gpt",
        (
            Partition(1, MiB, 32 * MiB, "N", type_name="ms-basic-data", filesystem="ntfs"),
            Partition(2, 33 * MiB, 4 * MiB, "E", type_name="efi-system", filesystem="vfat"),
            Partition(3, 40 * MiB, 4 * MiB, "U", type_name="linux-fs", filesystem=None),
        ),
        "D",
    )
    src = BytesSource(bytes(data))
    first = track_disk(src, layout, None, "no parent image", 1.0)
    assert first.change_map is None and len(first.state.partitions) == 1
    second = track_disk(src, layout, first.state, None, 2.0)
    p1, p2, p3 = second.partitions
    assert p1.method is Method.NTFS_MFT and p1.to_read is not None
    assert p2.by_design and p3.reason == "file system unknown has no change tracking"
    assert second.change_map is not None
    assert second.change_map.covers(33 * MiB, 15 * MiB) and second.change_map.covers(0, MiB)
    assert second.change_map & ExtentList([(MiB, 32 * MiB)]) == p1.to_read
    events = second.unavailable_events()
    assert [(e.code, e.details["partition"]) for e in events] == [(EventCode.DISK_IMAGE_CHANGE_TRACKING_UNAVAILABLE, 3)]
    no_digests = track_disk(src, layout, None, None, 3.0)
    assert no_digests.partitions[0].reason == "the parent image was made without change-tracking digests"


@pytest.mark.parametrize("mkfs", ["mkfs.ext2", "mkfs.ext3"])
def test_block_mapped_files_map_their_indirect_blocks(tmp_path: Path, mkfs: str) -> None:
    """ext2/ext3 files have block maps: data, indirect and double-indirect blocks."""
    _need_root()
    img = tmp_path / "ext.img"
    files = {"big.bin": random_bytes(6_000_000, 8), "other.bin": random_bytes(400_000, 9)}
    make_ext(img, 32 * MiB, files, mkfs=mkfs, options=("-b", "1024"))
    with open_device(img) as dev:
        first = ext4_track.scan(dev)
    with loop_device(img) as loop, mounted(loop) as mnt, open(mnt / "big.bin", "r+b") as f:
        f.seek(5_000_000)
        f.write(b"x" * 1000)
    # every block debugfs lists for the file, indirect blocks included
    big = ExtentList((int(b) * 1024, 1024) for b in run("debugfs", "-R", "blocks /big.bin", img).split())
    stat = run("debugfs", "-R", "stat /big.bin", img)
    assert "(IND)" in stat and "(DIND)" in stat
    ind = [int(x) for x in re.findall(r"\((?:D?IND)\):(\d+)", stat)]
    other = ExtentList((int(b) * 1024, 1024) for b in run("debugfs", "-R", "blocks /other.bin", img).split())
    with open_device(img) as dev:
        second = ext4_track.scan(dev, first.digests, time.time() + 5)
    assert not (big - second.changed)
    assert all(second.changed.covers(b * 1024, 1024) for b in ind)
    assert not (other & second.to_read)


@pytest.mark.parametrize("cluster", [512, 65536])
def test_ntfs_cluster_sizes(tmp_path: Path, cluster: int) -> None:
    _need_root()
    img = tmp_path / "ntfs.img"
    make_ntfs(img, 48 * MiB, FILES, cluster=cluster)
    first = _scan_ntfs(img)
    with loop_device(img) as dev, mounted(dev, "ntfs-3g") as mnt, open(mnt / "b.bin", "r+b") as f:
        f.write(b"y" * 10)
    second = _scan_ntfs(img, first.digests)
    b = ExtentList((c.offset * cluster, c.length * cluster) for c in ntfs_file_clusters(img, "b.bin"))
    a = ExtentList((c.offset * cluster, c.length * cluster) for c in ntfs_file_clusters(img, "a.bin"))
    assert b and not (b - second.changed) and not (a & second.to_read)


def test_unreadable_inode_table_falls_back_with_the_reason(ext_volume: Path) -> None:
    """EIO inside an inode table (the allocation map reads fine): that partition is read in full."""
    _need_root()
    part = Partition(1, 0, 32 * MiB, "X", filesystem="ext4")
    with open_device(ext_volume) as dev:
        parent = track_partition(dev, part, None, "no parent", 1.0).digests
        sb_descs = read_group_descs(dev, read_superblock(dev))
    table = sb_descs[0].inode_table * 4096
    with faulty_image(ext_volume, [(table + 8192, 4096)]) as path, open_device(path) as dev:
        got = track_partition(dev, part, parent, None, 2.0)
    assert got.to_read is None and got.reason.startswith("unreadable inode table") and "Errno 5" in got.reason


def test_ntfs_index_walk_finds_every_child_and_the_extend_files(tmp_path: Path) -> None:
    """Directory indexes (root + INDX blocks) name every child; ``$Extend``'s children are metadata."""
    _need_root()
    img = tmp_path / "ntfs.img"
    make_ntfs(img, 32 * MiB, {})
    with loop_device(img) as loop, mounted(loop, "ntfs-3g") as mnt:
        (mnt / "many").mkdir()
        for i in range(300):  # long names: the index spills into several INDX blocks
            (mnt / "many" / f"file-with-a-rather-long-name-{i:04d}").write_bytes(b"x")
        want = {p.stat().st_ino for p in (mnt / "many").iterdir()}
        many = (mnt / "many").stat().st_ino
    dumps = [run("ntfsinfo", "-F", f"/$Extend/{name}", img) for name in ("$ObjId", "$Quota", "$Reparse")]
    extend = {int(m.group(1)) for d in dumps if (m := re.search(r"Dumping Inode (\d+)", d))}
    assert len(extend) == 3
    with open_device(img) as dev:
        boot = read_boot_sector(dev)
        runs, size = ntfs_track._mft_runs(dev, boot)
        cs, rs = boot.cluster_size, boot.mft_record_size
        record = bytes(apply_fixups(bytearray(dev.read_at(runs[0].lcn * cs + many * rs, rs))))  # type: ignore[operator]
        assert set(ntfs_track._children(dev, cs, record)) == want
        assert ntfs_track._extend_files(dev, runs, cs, rs, size // rs) == {11} | extend
        scan = ntfs_track.scan(dev)
    for n in extend:  # their (resident or not) data is in the metadata: the records themselves are in $MFT
        assert scan.metadata.covers(runs[0].lcn * cs + n * rs, rs)  # type: ignore[operator]
