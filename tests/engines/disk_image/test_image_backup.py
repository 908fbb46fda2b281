"""Image backups of image files: restic gives the disk back, incrementals read and add little."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.errors import Cancelled as BackupCancelled
from e3backup.errors import LockError
from e3backup.events import Event, EventCode
from e3backup.store.base import FileType, Handle
from tests.helpers import restic, run_cli
from tests.repo.lock_race import prune_locks_with_the_next_run

from .conftest import MiB, backup, counting_opener, dump, make_mixed_image, open_repo

pytestmark = pytest.mark.restic


def _layout(repo_path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(dump(repo_path, "layout.json"))


def test_image_file_round_trip_through_restic(repo_path: Path, repo: object, image: tuple[Path, bytes]) -> None:
    path, data = image
    run = backup(repo_path, path, tags=("nightly",))
    r = run.result
    assert r.device_size == len(data) == r.plan_bytes == r.bytes_read  # no partition table: all planned
    assert r.full and not r.parent_id and r.file_name == "disk.raw.img"
    assert r.chunk_size == MiB  # a new chain's (auto_chunk_size)
    assert r.chunks_total == 64 and r.chunks_read == 64
    assert r.chunks_zero + r.chunks_new + r.chunks_known == 64
    assert dump(repo_path, "disk.raw.img") == data
    restic(repo_path, "check", "--read-data")
    codes = run.codes()
    assert codes[0] is EventCode.DISK_IMAGE_SNAPSHOT_NONE
    assert EventCode.DISK_IMAGE_READ_PLAN_FALLBACK in codes
    assert codes.index(EventCode.DISK_IMAGE_STREAM_START) < codes.index(EventCode.DISK_IMAGE_STREAM_COMPLETED)
    assert codes[-1] is EventCode.DISK_IMAGE_STREAM_COMPLETED
    snaps = json.loads(restic(repo_path, "snapshots", "--json").stdout)
    assert len(snaps) == 1 and snaps[0]["paths"] == [str(path)]
    assert set(snaps[0]["tags"]) == {"engine:disk_image", f"source:{path}", "type:full", "nightly"}
    layout = _layout(repo_path)
    assert layout["format"] == "e3backup-disk-layout" and layout["disk_size"] == len(data)
    assert layout["image"]["chunk_size"] == MiB and layout["image"]["file"] == "disk.raw.img"
    assert layout["plan"]["planned_bytes"] == len(data)
    assert layout["image"]["read_plan"]["extents"] == [[0, len(data)]]
    ls = restic(repo_path, "ls", "--json", "latest").stdout.decode().splitlines()
    nodes = {json.loads(x)["name"]: json.loads(x) for x in ls[1:]}
    assert nodes["disk.raw.img"]["size"] == len(data) and nodes["disk.raw.img"]["mode"] == 0o600


def test_zero_chunks_cost_one_blob_and_a_short_last_chunk_works(repo_path: Path, repo: object, tmp_path: Path) -> None:
    path = tmp_path / "sparse.img"
    size = 48 * MiB + 4096 + 512  # a short last chunk, not a whole number of 4 KiB
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(20 * MiB + 7)
        f.write(b"needle")
    r = backup(repo_path, path).result
    assert r.chunks_total == 49 and r.chunks_new == 1 and r.chunks_zero == 48
    # one data blob for the needle, two zero blobs (full and short) and the layout
    blobs = restic(repo_path, "list", "blobs").stdout.decode().split()
    assert blobs.count("data") == 4
    out = dump(repo_path, "sparse.img")
    assert len(out) == size and out[20 * MiB + 7 : 20 * MiB + 13] == b"needle" and out.count(0) == size - 6


def test_incremental_without_change_map_reads_the_plan_and_adds_only_changes(
    repo_path: Path, repo: object, image: tuple[Path, bytes]
) -> None:
    path, _ = image
    first = backup(repo_path, path, chunk_size=MiB).result
    with open(path, "r+b") as f:  # change two 1 MiB chunks
        for off in (5 * MiB + 100, 40 * MiB + 4000):
            f.seek(off)
            f.write(random.Random(off).randbytes(3000))
    run = backup(repo_path, path, chunk_size=MiB)
    r = run.result
    assert r.parent_id == first.snapshot_id and not r.full
    assert r.bytes_read == r.plan_bytes == path.stat().st_size  # every planned byte read again
    assert r.chunks_new == 2 and r.chunks_reused == 0
    assert 2 * MiB <= r.bytes_added <= 2 * MiB + 64 * 1024  # two chunks + the layout and tree
    assert dump(repo_path, "disk.raw.img") == path.read_bytes()
    snaps = json.loads(restic(repo_path, "snapshots", "--json").stdout)
    assert "type:incremental" in snaps[-1]["tags"] and snaps[-1]["parent"] == first.snapshot_id


def test_a_chain_keeps_its_chunk_size_and_a_new_chain_gets_the_automatic_one(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    """Chains made with another chunk size (4 MiB was the default) stay incremental: without
    ``chunk_size`` a run takes its parent's; a new chain gets ``auto_chunk_size`` (1 MiB here); a
    size asked for that differs from the parent's makes a full read that says why."""
    path, data = image
    first = backup(repo_path, path, chunk_size=4 * MiB).result
    with open(path, "r+b") as f:
        f.seek(9 * MiB)
        f.write(b"changed" * 100)
    cmap = tmp_path / "changes.json"
    cmap.write_text(json.dumps([[9 * MiB, 700]]))
    kept = backup(repo_path, path, changed_extents=str(cmap)).result
    assert kept.chunk_size == 4 * MiB and not kept.full and kept.parent_id == first.snapshot_id
    assert kept.chunks_read == 1 and kept.bytes_read == 4 * MiB
    other = tmp_path / "other.raw"
    other.write_bytes(data)
    fresh = backup(repo_path, other).result
    assert fresh.full and fresh.chunk_size == MiB and fresh.chunks_total == 64
    run = backup(repo_path, path, chunk_size=MiB, changed_extents=str(cmap))
    assert run.result.full and run.result.chunk_size == MiB
    ignored = [e for e in run.events if e.code is EventCode.DISK_IMAGE_CHANGE_MAP_IGNORED]
    assert ignored and "chunk size changed" in ignored[0].message
    assert dump(repo_path, "disk.raw.img") == path.read_bytes()
    restic(repo_path, "check", "--read-data")


def test_incremental_with_change_map_reads_only_changed_chunks(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = image
    backup(repo_path, path, chunk_size=MiB)
    changes = [(3 * MiB + 10, 100), (30 * MiB - 50, 100), (63 * MiB, MiB)]  # the second spans 2 chunks
    with open(path, "r+b") as f:
        for off, n in changes:
            f.seek(off)
            f.write(random.Random(off).randbytes(n))
    cmap = tmp_path / "changes.json"
    cmap.write_text(json.dumps([[o, n] for o, n in changes]))
    opener, devices = counting_opener()
    r = backup(repo_path, path, chunk_size=MiB, changed_extents=str(cmap), opener=opener).result
    changed_chunks = {3, 29, 30, 63}
    assert r.change_map_used and not r.full
    assert r.chunks_read == 4 and r.bytes_read == 4 * MiB
    assert r.chunks_reused == 64 - 4
    grid_reads = {off // MiB for off, n in devices[0].reads if n == MiB}
    assert grid_reads == changed_chunks  # nothing else was read (layout probing reads are small)
    assert dump(repo_path, "disk.raw.img") == path.read_bytes()
    restic(repo_path, "check", "--read-data")


def test_parent_of_another_size_makes_a_full_read_with_an_event(
    repo_path: Path, repo: object, image: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, _ = image
    backup(repo_path, path, chunk_size=MiB)
    with open(path, "r+b") as f:
        f.truncate(80 * MiB)
    cmap = tmp_path / "changes.json"
    cmap.write_text("[[0, 4096]]")
    run = backup(repo_path, path, chunk_size=MiB, changed_extents=str(cmap))
    r = run.result
    assert r.full and not r.change_map_used and r.chunks_reused == 0
    assert r.bytes_read == r.plan_bytes == 80 * MiB
    ignored = [e for e in run.events if e.code is EventCode.DISK_IMAGE_CHANGE_MAP_IGNORED]
    assert len(ignored) == 1 and "size changed" in ignored[0].details["reason"]
    assert dump(repo_path, "disk.raw.img") == path.read_bytes()


def test_cancel_stops_quickly_and_leaves_no_snapshot(repo_path: Path, repo: object, tmp_path: Path) -> None:
    path = tmp_path / "big.raw"
    make_mixed_image(path, 128 * MiB, seed=5)
    cancel = threading.Event()
    stamp: list[float] = []

    def after_read(count: int) -> None:
        if count == 6 and not cancel.is_set():
            stamp.append(time.monotonic())
            cancel.set()

    opener, _ = counting_opener(after_read)
    events: list = []  # type: ignore[type-arg]
    with pytest.raises(BackupCancelled):
        backup(repo_path, path, chunk_size=MiB, opener=opener, cancel=cancel, events=events)
    assert time.monotonic() - stamp[0] < 5
    assert events[-1].code is EventCode.RUN_CANCELLED
    assert EventCode.DISK_IMAGE_STREAM_COMPLETED not in [e.code for e in events]
    assert open_repo(repo_path).snapshots() == []
    restic(repo_path, "check", "--read-data")  # no lock left, every stored pack indexed
    # the next run completes and reuses what the cancelled one stored
    r = backup(repo_path, path, chunk_size=MiB).result
    assert dump(repo_path, "big.raw.img") == path.read_bytes()
    assert r.chunks_known > 0 or r.chunks_new < r.chunks_total


def test_json_lines_from_the_cli(
    repo_path: Path, repo: object, image: tuple[Path, bytes], password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path, data = image
    res = run_cli(capsys, "-r", str(repo_path), "image", "backup", str(path), "--json", "--chunk-size", "2M")
    assert res.code == 0, res.err
    lines = [json.loads(x) for x in res.out.splitlines()]
    kinds = {x["message_type"] for x in lines}
    assert kinds == {"event", "status", "summary"}
    summary = lines[-1]
    assert summary["message_type"] == "summary"
    for key in ("snapshot_id", "device_size", "bytes_read", "bytes_added", "chunks_reused", "full"):
        assert key in summary, key
    assert summary["device_size"] == len(data) and summary["full"] is True and summary["chunk_size"] == 2 * MiB
    events = [x for x in lines if x["message_type"] == "event"]
    assert all(set(e) == {"message_type", "code", "level", "message", "details"} for e in events)
    assert [e["code"] for e in events][-1] == "DISK_IMAGE_STREAM_COMPLETED"
    status = [x for x in lines if x["message_type"] == "status"][-1]
    assert status["total_bytes"] == len(data) and status["plan_bytes"] == len(data)
    assert status["percent_done"] == 1.0 and status["bytes_read"] == len(data)
    # a second run picks the first as its parent and says so
    res = run_cli(capsys, "-r", str(repo_path), "image", "backup", str(path), "--json", "--chunk-size", "2M")
    second = json.loads(res.out.splitlines()[-1])
    assert second["parent_id"] == summary["snapshot_id"] and second["full"] is False
    assert second["bytes_added"] < 64 * 1024


def test_a_prune_locking_at_the_same_moment_fails_the_backup_before_its_index(
    repo_path: Path, repo: object, image: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock's re-check runs while the backup reads (it no longer waits for it first): a
    competitor that locked at the same moment fails the run with the lock error before its index or
    snapshot is written, and the packs it stored are not indexed behind the competitor's back.
    Once the competitor is gone the next run adopts those packs and completes."""
    path, data = image
    rp = open_repo(repo_path)
    rp.pack_size = MiB  # packs are stored while the run reads, long before its index
    all_read = threading.Event()
    competitor = prune_locks_with_the_next_run(monkeypatch, rp, all_read)
    opener, _ = counting_opener(lambda n: all_read.set() if n == 64 else None)
    indexes = rp.list_ids(FileType.INDEX)
    events: list[Event] = []
    opts = ImageBackupOptions(source=str(path), snapshot="none", chunk_size=MiB)
    with pytest.raises(LockError, match="exclusive lock"):
        run_image_backup(rp, opts, on_event=events.append, opener=opener)
    assert rp.snapshots() == [] and rp.list_ids(FileType.INDEX) == indexes
    stored = rp.list_ids(FileType.PACK)
    assert stored  # stored while reading, and left unindexed
    assert events[-1].code is EventCode.DISK_IMAGE_FAILED and "exclusive lock" in events[-1].message
    assert EventCode.RUN_CANCELLED not in [e.code for e in events]
    monkeypatch.undo()
    rp.store.remove(Handle(FileType.LOCK, competitor[0]))
    rp.close()
    r = backup(repo_path, path, chunk_size=MiB).result
    assert r.chunks_known > 0  # the left packs, adopted
    assert dump(repo_path, "disk.raw.img") == data
    restic(repo_path, "check", "--read-data")
