"""The stored image format: written once, read back by the one reader, judged by restic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from e3backup.repo import Repository
from e3backup.repo.blob import BlobType
from e3backup.repo.snapshot import Snapshot
from e3backup.repo.writer import BlobWriter
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout.model import DiskLayout, Partition
from e3backup.sources.plan import PlanMode, ReadPlan
from e3backup.sources.stored_image import (
    ENGINE_TAG,
    LAYOUT_NAME,
    ImageDocument,
    NotAnImageError,
    find_image_snapshot,
    image_tags,
    load_image_snapshot,
    save_image_tree,
    tracking_name,
    zero_blob_id,
    zero_blob_ids,
)
from tests.helpers import restic

CHUNK = 64 * 1024
SIZE = 3 * CHUNK + 4096  # a short last chunk
LAYOUT = DiskLayout(512, SIZE, "gpt", (Partition(1, 4096, 2 * CHUNK, "X", guid="G1"),), "D")


def _disk() -> bytes:
    data = bytearray(SIZE)
    data[:CHUNK] = hashlib.sha256(b"a").digest() * (CHUNK // 32)  # chunk 0 data, 1 and 3 zero
    data[2 * CHUNK : 3 * CHUNK] = b"x" * CHUNK
    return bytes(data)


def _store(repo: Repository, disk: bytes, tracking: dict[str, bytes] | None = None, host: str = "h1") -> Snapshot:
    plan = ReadPlan(SIZE, PlanMode.USED, ExtentList([(0, CHUNK), (2 * CHUNK, CHUNK)]), ExtentList())
    doc = ImageDocument(LAYOUT, "sda.img", SIZE, CHUNK, plan, ExtentList([(10, 5)]))
    zeros = zero_blob_ids(SIZE, CHUNK)
    content = []
    with repo.lock(), BlobWriter(repo) as w:
        for off in range(0, SIZE, CHUNK):
            piece = disk[off : off + CHUNK]
            content.append(w.save(BlobType.DATA, piece)[0] if any(piece) else zeros[len(piece)])
            if not any(piece):
                w.save(BlobType.DATA, piece)
        tree = save_image_tree(repo, w, doc, content, 1_700_000_000 * 10**9, tracking)
    snap = Snapshot(
        time=1_700_000_000 * 10**9,
        tree=tree,
        paths=["/dev/sda"],
        hostname=host,
        tags=image_tags("/dev/sda", True, ["job:1", ENGINE_TAG]),
    )
    repo.save_snapshot(snap)
    return snap


def test_round_trip_with_tracking_data_and_restic_as_judge(repo: Repository, repo_path: Path) -> None:
    disk = _disk()
    big = bytes(range(256)) * 40_000  # > 4 MiB: stored in several blobs
    snap = _store(repo, disk, {"p1": b"digests of p1", "disk": big})
    assert snap.tags == [ENGINE_TAG, "source:/dev/sda", "type:full", "job:1"]
    img = load_image_snapshot(repo, snap)
    assert (img.file_name, img.device_size, img.chunk_size, img.chunk_count) == ("sda.img", SIZE, CHUNK, 4)
    assert img.plan == ExtentList([(0, CHUNK), (2 * CHUNK, CHUNK)])
    assert img.document.recovered == ExtentList([(10, 5)])
    assert img.layout.same_geometry(LAYOUT) and img.parent.layout is img.layout
    assert img.zero_ids() == {zero_blob_id(CHUNK), zero_blob_id(4096)}
    assert img.content[1] == zero_blob_id(CHUNK) and img.content[3] == zero_blob_id(4096)
    assert img.tracking_keys() == ["disk", "p1"]
    assert img.load_tracking(repo, "p1") == b"digests of p1" and img.load_tracking(repo, "disk") == big
    assert img.load_tracking(repo, "p2") is None
    assert json.loads(img.layout_json)["image"]["tracking"] == {"disk": "tracking-disk.bin", "p1": "tracking-p1.bin"}
    # restic reads it as a plain snapshot: the disk and the tracking files come back byte for byte
    assert restic(repo_path, "dump", snap.id, "/sda.img").stdout == disk
    assert restic(repo_path, "dump", snap.id, "/tracking-disk.bin").stdout == big
    restic(repo_path, "check", "--read-data")


def test_without_tracking_the_document_has_no_tracking_section(repo: Repository) -> None:
    img = load_image_snapshot(repo, _store(repo, _disk()))
    assert "tracking" not in json.loads(img.layout_json)["image"] and img.tracking_keys() == []


def test_latest_parent_is_this_hosts_image_of_this_source(repo: Repository) -> None:
    mine = _store(repo, _disk(), host="h1")
    _store(repo, _disk(), host="h2")
    assert find_image_snapshot(repo, None, "h1", "/dev/sda") is not None
    assert find_image_snapshot(repo, None, "h1", "/dev/sda").id == mine.id  # type: ignore[union-attr]
    assert find_image_snapshot(repo, None, "h3", "/dev/sda") is None
    assert find_image_snapshot(repo, None, "h1", "/dev/sdb") is None


def test_a_file_snapshot_is_refused_with_one_error(repo: Repository) -> None:
    with repo.lock(), BlobWriter(repo) as w:
        tree = repo.save_tree(w, [])
    snap = Snapshot(time=1, tree=tree, paths=["/x"], hostname="h", tags=["engine:files"])
    repo.save_snapshot(snap)
    with pytest.raises(
        NotAnImageError, match=f"is not a disk image snapshot \\(no {LAYOUT_NAME}; tags: engine:files\\)"
    ):
        load_image_snapshot(repo, snap)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{", "unreadable layout.json"),
        (b'{"format": "e3backup-disk-layout"}', "unreadable layout.json"),
    ],
)
def test_a_damaged_document_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(NotAnImageError, match=why):
        ImageDocument.parse(raw, "snapshot 1234")


def test_tracking_names_are_checked_both_ways() -> None:
    assert tracking_name("p1") == "tracking-p1.bin"
    with pytest.raises(ValueError, match="invalid tracking key"):
        tracking_name("../x")
    plan = ReadPlan(SIZE, PlanMode.FULL, ExtentList([(0, SIZE)]), ExtentList())
    doc = json.loads(ImageDocument(LAYOUT, "a.img", SIZE, CHUNK, plan, tracking={"p1": "tracking-p1.bin"}).encode())
    doc["image"]["tracking"] = {"p1": "../../etc/passwd"}
    with pytest.raises(NotAnImageError, match="invalid tracking files"):
        ImageDocument.parse(json.dumps(doc).encode(), "snapshot 1234")


def test_zero_blob_ids_are_those_of_the_grid_lengths() -> None:
    assert zero_blob_ids(SIZE, CHUNK) == {
        CHUNK: hashlib.sha256(bytes(CHUNK)).digest(),
        4096: hashlib.sha256(bytes(4096)).digest(),
    }
    assert set(zero_blob_ids(4 * CHUNK, CHUNK)) == {CHUNK}
    assert zero_blob_ids(0, CHUNK) == {}
