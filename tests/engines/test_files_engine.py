"""The files engine end to end: backup, restore, parent reuse, progress, restic as judge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e3backup.repo import Repository
from e3backup.store import FileType, LocalStore

from ..helpers import PASSWORD, restic, run_cli
from .trees import allocated_bytes, describe, make_tree


@pytest.fixture
def env(tmp_path: Path, password_env: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    monkeypatch.setenv("E3BACKUP_REPOSITORY", str(repo))
    monkeypatch.chdir(tmp_path)
    return repo


def _init(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "init")
    assert r.code == 0, r.err


def _summary(out: str) -> dict[str, object]:
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines[-1]["message_type"] == "summary"
    return lines[-1]


def test_round_trip_is_exact_and_restic_agrees(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_tree(tmp_path)
    _init(capsys)
    r = run_cli(capsys, "backup", "src", "--tag", "daily", "--json")
    assert r.code == 0, r.err
    summary = _summary(r.out)
    assert summary["files_new"] >= 12 and summary["errors"] == []
    r = run_cli(capsys, "restore", "latest", "--target", "out", "--verify")
    assert r.code == 0, r.err
    assert describe(tmp_path / "out" / "src") == describe(src)
    # holes stay holes
    assert allocated_bytes(tmp_path / "out" / "src" / "sparse") < 1024 * 1024
    if os.getxattr(src / "a.txt", "user.e3backup") if _has_xattr(src) else False:
        assert os.getxattr(tmp_path / "out" / "src" / "a.txt", "user.e3backup") == b"xattr-value"
    # the real restic restores our snapshot identically and finds nothing wrong
    restic(env, "check", "--read-data")
    restic(env, "restore", "latest", "--target", str(tmp_path / "restic-out"))
    assert describe(tmp_path / "restic-out" / "src") == describe(src)


def _has_xattr(p: Path) -> bool:
    try:
        os.getxattr(p / "a.txt", "user.e3backup")
        return True
    except OSError:
        return False


def test_we_restore_restic_snapshots_identically(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_tree(tmp_path)
    restic(env, "init")
    subprocess.run(
        ["restic", "-r", str(env), "backup", "src"],
        cwd=tmp_path,
        env={**os.environ, "RESTIC_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
    )
    r = run_cli(capsys, "restore", "latest", "--target", "out", "--verify")
    assert r.code == 0, r.err
    assert describe(tmp_path / "out" / "src") == describe(src)


@pytest.mark.parametrize("args", [["src"], ["src/sub", "src/a.txt"], ["ABS"], ["."], ["../src/sub"]])
def test_layout_matches_restic(args: list[str], env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    args = [a.replace("ABS", str(tmp_path / "src")).replace("DIR", tmp_path.name) for a in args]
    cwd = tmp_path / "src" if args == ["."] else (work if args[0].startswith("..") else tmp_path)
    _init(capsys)
    os.chdir(cwd)
    assert run_cli(capsys, "backup", *args, "--tag", "ours").code == 0
    subprocess.run(
        ["restic", "-r", str(env), "backup", "--tag", "restic", *args],
        cwd=cwd,
        env={**os.environ, "RESTIC_PASSWORD": PASSWORD},
        check=True,
        capture_output=True,
    )
    ours = restic(env, "ls", "--tag", "ours", "latest").stdout.splitlines()[1:]
    theirs = restic(env, "ls", "--tag", "restic", "latest").stdout.splitlines()[1:]
    assert ours == theirs
    snaps = {s["tags"][0]: s for s in json.loads(restic(env, "snapshots", "--json").stdout)}
    assert sorted(snaps["ours"]["paths"]) == sorted(snaps["restic"]["paths"])


def test_parent_snapshot_skips_unchanged_files(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_tree(tmp_path)
    _init(capsys)
    first = _summary(run_cli(capsys, "backup", "src", "--json").out)
    second = _summary(run_cli(capsys, "backup", "src", "--json").out)
    assert second["parent_id"] == first["snapshot_id"]
    assert second["bytes_read"] == 0 and second["bytes_added"] == 0
    assert second["files_new"] == 0 and second["files_changed"] == 0 and second["files_unmodified"] >= 12
    (src / "sub" / "deeper" / "c.txt").write_text("changed!")
    third = _summary(run_cli(capsys, "backup", "src", "--json").out)
    assert third["files_changed"] == 1 and third["bytes_read"] == len("changed!")
    r = run_cli(capsys, "restore", "latest", "--target", "out")
    assert r.code == 0 and (tmp_path / "out/src/sub/deeper/c.txt").read_text() == "changed!"


def test_json_progress_lines(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(tmp_path, big=30_000_000)
    _init(capsys)
    r = run_cli(capsys, "backup", "src", "--json")
    msgs = [json.loads(line) for line in r.out.splitlines()]
    assert {m["message_type"] for m in msgs} == {"status", "summary"}
    status = [m for m in msgs if m["message_type"] == "status"][-1]
    assert status["files_done"] == status["total_files"] and status["percent_done"] == 1.0
    summary = msgs[-1]
    for key in (
        "snapshot_id",
        "files_new",
        "files_changed",
        "files_unmodified",
        "bytes_read",
        "bytes_added",
        "duration",
    ):
        assert key in summary


def test_excludes(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(tmp_path)
    (tmp_path / "ex").write_text("*.bin\n# comment\n")
    _init(capsys)
    assert run_cli(capsys, "backup", "src", "--exclude", "deeper", "--exclude-file", "ex").code == 0
    listing = run_cli(capsys, "ls", "latest").out.splitlines()
    assert "/src/a.txt" in listing
    assert not any("deeper" in p or p.endswith(".bin") for p in listing)


def test_subpath_include_exclude_ls_dump(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_tree(tmp_path)
    _init(capsys)
    run_cli(capsys, "backup", "src")
    assert run_cli(capsys, "restore", "latest:src/sub", "--target", "sub-only").code == 0
    assert sorted(os.listdir(tmp_path / "sub-only")) == ["a-hardlink", "b.bin", "deeper"]
    assert run_cli(capsys, "restore", "latest", "--target", "inc", "--include", "/src/sub/deeper").code == 0
    assert (tmp_path / "inc/src/sub/deeper/c.txt").read_text() == "gamma"
    assert not (tmp_path / "inc/src/a.txt").exists()
    assert run_cli(capsys, "restore", "latest", "--target", "exc", "--exclude", "*.bin").code == 0
    assert not (tmp_path / "exc/src/sub/b.bin").exists() and (tmp_path / "exc/src/a.txt").exists()
    r = run_cli(capsys, "ls", "latest", "/src/sub", "--json")
    nodes = [json.loads(line) for line in r.out.splitlines()][1:]
    assert {n["path"] for n in nodes} == {
        "/src/sub/a-hardlink",
        "/src/sub/b.bin",
        "/src/sub/deeper",
        "/src/sub/deeper/c.txt",
    }
    p = subprocess.run(
        [sys.executable, "-m", "e3backup", "dump", "latest", "/src/sub/b.bin"], capture_output=True, check=True
    )
    assert p.stdout == (src / "sub" / "b.bin").read_bytes()
    p = subprocess.run(
        [sys.executable, "-m", "e3backup", "dump", "latest", "/src/sub"], capture_output=True, check=True
    )
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        member = tar.extractfile("sub/deeper/c.txt")
        assert member is not None and member.read() == b"gamma"


@pytest.mark.slow
def test_killed_backup_leaves_checkable_repo_and_next_run_reuses_uploads(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"f{i}").write_bytes(os.urandom(8 * 1024 * 1024))
    _init(capsys)
    proc = subprocess.Popen(
        [sys.executable, "-m", "e3backup", "--limit-upload", "16384", "backup", "src", "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "E3BACKUP_PACK_SIZE": "4"},
    )
    assert proc.stdout is not None
    store = LocalStore(env)
    # wait until a good part has been uploaded, then kill without warning
    deadline = time.monotonic() + 120
    while sum(1 for _ in store.list(FileType.PACK)) < 6:
        assert proc.poll() is None, "backup finished before it could be killed"
        assert time.monotonic() < deadline
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    uploaded = sum(size for _, size in store.list(FileType.PACK))
    assert list(store.list(FileType.SNAPSHOT)) == []
    # a stale lock of a dead process does not stop check (ours removes it); restic agrees
    assert run_cli(capsys, "check", "--read-data").code == 0
    restic(env, "check", "--read-data")
    r = run_cli(capsys, "backup", "src", "--json")
    assert r.code == 0, r.err
    summary = _summary(r.out)
    assert summary["bytes_stored"] <= 96 * 1024 * 1024 - uploaded + 8 * 1024 * 1024
    assert run_cli(capsys, "restore", "latest", "--target", "out").code == 0
    assert describe(tmp_path / "out" / "src") == describe(src)
    restic(env, "check", "--read-data")
    repo = Repository.open(store, PASSWORD.encode())
    assert len(repo.snapshots()) == 1


@pytest.mark.parametrize("window", ["default", "smallest"])
def test_streaming_chunker_cuts_like_whole_file_chunking(tmp_path: Path, window: str) -> None:
    """Whatever the window the memory budget gives, the cut points are those of the whole file."""
    import random

    from e3backup.engines.files.file_saver import cdc_chunks, stream_chunks
    from e3backup.engines.files.options import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK
    from e3backup.engines.files.sizing import MIN_WINDOW, WINDOW

    rnd = random.Random(5)
    data = rnd.randbytes(45 << 20) + bytes(19 << 20) + rnd.randbytes(3 << 20) + b"tail"
    (tmp_path / "f").write_bytes(data)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        streamed = list(stream_chunks(fd, WINDOW if window == "default" else MIN_WINDOW))
    finally:
        os.close(fd)
    whole = [data[c.offset : c.offset + c.length] for c in cdc_chunks(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)]
    assert streamed == whole


def test_cancel_stops_the_walk_and_saves_no_snapshot(repo: Repository, tmp_path: Path) -> None:
    """A set cancel event stops a backup mid-file (checked per chunk) with no snapshot saved."""
    import threading

    from e3backup.engines.files import BackupOptions, run_backup
    from e3backup.errors import Cancelled
    from e3backup.progress import Progress

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}.bin").write_bytes(os.urandom(3 << 20))
    cancel = threading.Event()

    class CancelAfterFirstChunk(Progress):
        def add(self, files: int = 0, nbytes: int = 0, current: str | None = None) -> None:
            super().add(files, nbytes, current)
            if nbytes:
                cancel.set()

    progress = CancelAfterFirstChunk(mode="quiet")
    with pytest.raises(Cancelled):
        run_backup(repo, BackupOptions(paths=[str(src)], read_workers=1), progress, cancel=cancel)
    assert progress.c.bytes_done < 12 << 20  # stopped within a few chunks, not after reading everything
    assert repo.list_ids(FileType.SNAPSHOT) == []
    cancel.set()  # already set before the start: stops at once
    with pytest.raises(Cancelled):
        run_backup(repo, BackupOptions(paths=[str(src)]), cancel=cancel)
    assert repo.list_ids(FileType.SNAPSHOT) == []


def test_a_prune_locking_at_the_same_moment_fails_the_backup_before_its_index(
    repo: Repository, repo_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock's re-check runs while the backup reads (``contract.writing_lock``): a competitor
    that locked at the same moment fails the run with the lock error before its index or snapshot
    is written; the packs it stored stay unindexed (not indexed behind the competitor's back) and
    the next run, once the competitor is gone, adopts them."""
    import threading

    from e3backup.engines.files import BackupOptions, run_backup
    from e3backup.errors import LockError
    from e3backup.progress import Progress
    from e3backup.store import Handle
    from tests.repo.lock_race import prune_locks_with_the_next_run

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}.bin").write_bytes(os.urandom(3 << 20))
    repo.pack_size = 1 << 20  # packs are stored while the run reads, long before its index
    all_read = threading.Event()
    competitor = prune_locks_with_the_next_run(monkeypatch, repo, all_read)

    class Counting(Progress):
        def add(self, files: int = 0, nbytes: int = 0, current: str | None = None) -> None:
            super().add(files, nbytes, current)
            if self.c.bytes_done >= 12 << 20:
                all_read.set()

    indexes = repo.list_ids(FileType.INDEX)
    with pytest.raises(LockError, match="exclusive lock"):
        run_backup(repo, BackupOptions(paths=[str(src)]), Counting(mode="quiet"))
    assert repo.list_ids(FileType.SNAPSHOT) == [] and repo.list_ids(FileType.INDEX) == indexes
    assert repo.list_ids(FileType.PACK)  # stored while reading, left unindexed
    monkeypatch.undo()
    repo.store.remove(Handle(FileType.LOCK, competitor[0]))
    again = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    try:
        result = run_backup(again, BackupOptions(paths=[str(src)]))
    finally:
        again.close()
    # the left packs, adopted: what they hold is not stored again (how much of the 12 MiB the
    # failed run had uploaded when it stopped varies with the machine's speed)
    assert result.bytes_added < 12 << 20
    restic(repo_path, "check", "--read-data")


@pytest.mark.root
def test_one_file_system_keeps_the_mount_point_but_not_its_contents(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    (src / "mnt").mkdir(parents=True)
    (src / "here.txt").write_text("here")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(src / "mnt")], check=True)
    try:
        (src / "mnt" / "elsewhere.txt").write_text("other file system")
        _init(capsys)
        assert run_cli(capsys, "backup", "src", "--one-file-system").code == 0
        listing = run_cli(capsys, "ls", "latest").out.splitlines()
        assert "/src/here.txt" in listing and "/src/mnt" in listing
        assert "/src/mnt/elsewhere.txt" not in listing
        assert run_cli(capsys, "backup", "src").code == 0
        assert "/src/mnt/elsewhere.txt" in run_cli(capsys, "ls", "latest").out.splitlines()
    finally:
        subprocess.run(["umount", str(src / "mnt")], check=True)
