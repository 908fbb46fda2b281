"""A mirror in a local folder: names, sizes, contents and modification times (to the
nanosecond) match the source after every sync; the CLI's exit codes and dry run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from e3backup.engines.sync import LocalTarget, SyncOptions, SyncResult, run_sync
from e3backup.errors import UsageError
from e3backup.events import Event
from e3backup.progress import Progress

from .helpers import make_tree, source_listing


def sync(opts: SyncOptions, events: list[Event] | None = None) -> SyncResult:
    with Progress(mode="quiet") as progress:
        return run_sync(opts, progress, (events if events is not None else []).append)


def assert_mirror(dst: Path, src: Path) -> None:
    assert source_listing(dst) == source_listing(src)  # mtimes included


def test_local_create_modify_delete_rename(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, big=3 << 20, backslash=True)
    opts = SyncOptions((str(src),), LocalTarget(str(dst)))
    first = sync(opts)
    assert first.files_transferred == first.source_files and not first.errors
    assert_mirror(dst, src)

    (src / "many" / "2").rename(src / "many" / "two")
    (src / "hash#tag.txt").write_text("changed")
    (src / ".hidden").unlink()
    second = sync(opts)
    assert second.files_deleted == 11  # ten renamed away, one deleted
    assert not (dst / "many" / "2").exists()  # the folder left empty is gone too
    assert_mirror(dst, src)
    assert sync(opts).files_transferred == 0


def test_cli_sync_exit_codes_and_dry_run(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src)
    cmd = [sys.executable, "-m", "e3backup.cli.main", "sync"]
    dry = subprocess.run([*cmd, "--dry-run", str(src), str(dst)], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "Would copy:" in dry.stdout and not dst.exists()
    done = subprocess.run([*cmd, str(src), str(dst)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_mirror(dst, src)
    for p in src.iterdir():  # the source came back empty
        if p.is_file():
            p.unlink()
    for d in ("d1", "many"):
        subprocess.run(["rm", "-rf", str(src / d)], check=True)
    refused = subprocess.run([*cmd, str(src), str(dst)], capture_output=True, text=True)
    assert refused.returncode == 3
    assert "SYNC_DELETE_REFUSED: refused to delete" in refused.stderr
    assert len(source_listing(dst)) > 30  # nothing deleted
    bad = subprocess.run([*cmd, str(src), str(src / "inside")], capture_output=True, text=True)
    assert bad.returncode == 2 and "overlap" in bad.stderr


def test_overlapping_source_and_destination_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="overlap"):
        sync(SyncOptions((str(tmp_path),), LocalTarget(str(tmp_path / "mirror"))))


def test_mtime_kept_to_the_nanosecond(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    f = src / "t"
    f.write_text("x")
    os.utime(f, ns=(1, 1_234_567_890_123_456_789))
    sync(SyncOptions((str(src),), LocalTarget(str(dst))))
    assert (dst / "t").stat().st_mtime_ns == 1_234_567_890_123_456_789


def test_limit_upload_paces_every_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared token bucket runs (bytes beyond the first second's burst) / rate into debt: with
    the waits not slept, the last one asked for is the time the whole transfer must take."""
    from e3backup.engines.sync import run as sync_run

    waits: list[float] = []
    monkeypatch.setattr(sync_run._Run, "_wait", lambda self, seconds: waits.append(seconds))
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(os.urandom(512 * 1024))
    sync(SyncOptions((str(src),), LocalTarget(str(tmp_path / "free"))))
    assert waits == []
    sync(SyncOptions((str(src),), LocalTarget(str(tmp_path / "paced")), limit_upload=1024))
    expected = (8 * 512 * 1024 - 1024 * 1024) / (1024 * 1024)  # 3 s at 1 MiB/s after a 1 MiB burst
    assert expected * 0.9 <= max(waits) <= expected * 1.01
    assert source_listing(tmp_path / "paced") == source_listing(src)


def test_one_missing_source_of_two_keeps_its_part_and_syncs_the_other(tmp_path: Path) -> None:
    a, b, dst = tmp_path / "a", tmp_path / "b", tmp_path / "dst"
    make_tree(a)
    (b / "x").mkdir(parents=True)
    (b / "x" / "y.txt").write_text("y")
    opts = SyncOptions((str(a), str(b)), LocalTarget(str(dst)), max_delete_percent=100)
    sync(opts)
    b.rename(tmp_path / "b-unmounted")
    (a / "new.txt").write_text("new")
    events: list[Event] = []
    result = sync(opts, events)
    assert result.errors == [f"{b}: source folder does not exist"] and result.files_deleted == 0
    assert [e.code.value for e in events if e.code.value.startswith("SYNC_SOURCE")] == ["SYNC_SOURCE_MISSING"]
    assert (dst / "b" / "x" / "y.txt").read_text() == "y"  # its part is protected
    assert (dst / "a" / "new.txt").read_text() == "new"
