"""Bad input gets one clear line, the right exit code, and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from e3backup.errors import IntegrityError, LockError
from e3backup.repo import BlobType, Repository, Snapshot
from e3backup.repo.lock import Lock
from e3backup.store import FileType, Handle, LocalStore

from ..helpers import PASSWORD, run_cli


def _snapshot_repo(repo: Repository) -> tuple[bytes, str]:
    data = os.urandom(200_000)
    with repo.lock(), repo.writer() as w:
        blob, _ = w.save(BlobType.DATA, data)
        from e3backup.repo import Node

        root = repo.save_tree(w, [Node(name=b"f", type="file", mode=0o644, size=len(data), content=[blob], mtime=1)])
    sid = repo.save_snapshot(Snapshot(time=10**18, tree=root, paths=["/f"]))
    return blob, sid


def _tree_listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_wrong_password_one_line_exit_1_nothing_written(
    repo: Repository, repo_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _snapshot_repo(repo)
    before = _tree_listing(repo_path)
    monkeypatch.setenv("E3BACKUP_PASSWORD", "not the password")
    for args in (["snapshots"], ["check"], ["cat", "config"]):
        r = run_cli(capsys, "-r", str(repo_path), *args)
        assert r.code == 1
        assert r.err.strip().count("\n") == 0
        assert "wrong password" in r.err
    assert _tree_listing(repo_path) == before


def test_missing_repository(tmp_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys, "-r", str(tmp_path / "nope"), "snapshots")
    assert r.code == 1 and "no repository here" in r.err and str(tmp_path / "nope") in r.err


def test_no_repository_given_is_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E3BACKUP_REPOSITORY", raising=False)
    monkeypatch.setenv("E3BACKUP_PASSWORD", "x")
    r = run_cli(capsys, "snapshots")
    assert r.code == 2 and "--repo" in r.err


def test_unreadable_repository(tmp_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "file-not-dir"
    bad.write_text("x")
    r = run_cli(capsys, "-r", str(bad), "snapshots")
    assert r.code == 1 and str(bad) in r.err


def test_unknown_repository_version(
    repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {"version": 3, "id": repo.config.id, "chunker_polynomial": f"{repo.config.chunker_polynomial:x}"}
    cfg = repo_path / "config"
    os.chmod(cfg, 0o600)
    cfg.write_bytes(repo.key.seal(json.dumps(doc).encode()))
    r = run_cli(capsys, "-r", str(repo_path), "snapshots")
    assert r.code == 1 and "unsupported repository version 3" in r.err


def test_init_refuses_existing_repository(
    repo_path: Path, repo: Repository, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (repo_path / "config").read_bytes()
    r = run_cli(capsys, "-r", str(repo_path), "init")
    assert r.code == 1 and "already exists" in r.err
    assert (repo_path / "config").read_bytes() == before


def _flip(path: Path, offset: int) -> None:
    os.chmod(path, 0o600)
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x10
    path.write_bytes(bytes(b))


def test_flipped_bit_in_pack_named_by_check_and_read_fails(
    repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blob, _ = _snapshot_repo(repo)
    repo.load_index()
    loc = repo.index.lookup(BlobType.DATA, blob)
    assert loc is not None
    _flip(repo_path / "data" / loc.pack_id[:2] / loc.pack_id, loc.blob.offset + 100)
    r = run_cli(capsys, "-r", str(repo_path), "check", "--read-data")
    assert r.code == 1
    assert loc.pack_id in r.err and blob.hex() in r.err
    fresh = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    fresh.load_index()
    with pytest.raises(IntegrityError, match=blob.hex()):
        fresh.load_blob(BlobType.DATA, blob)
    # without --read-data the structure is fine, so check passes
    assert run_cli(capsys, "-r", str(repo_path), "check").code == 0


@pytest.mark.parametrize("kind", [FileType.INDEX, FileType.SNAPSHOT])
def test_flipped_bit_in_index_or_snapshot(
    kind: FileType, repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _snapshot_repo(repo)
    name = repo.list_ids(kind)[0]
    _flip(repo_path / kind.value / name, 40)
    r = run_cli(capsys, "-r", str(repo_path), "check")
    assert r.code == 1
    assert name in r.err
    with pytest.raises(IntegrityError, match=name):
        repo.load_unpacked(kind, name)


def test_missing_pack_is_named(
    repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blob, _ = _snapshot_repo(repo)
    repo.load_index()
    loc = repo.index.lookup(BlobType.DATA, blob)
    assert loc is not None
    LocalStore(repo_path).remove(Handle(FileType.PACK, loc.pack_id))
    r = run_cli(capsys, "-r", str(repo_path), "check")
    assert r.code == 1 and loc.pack_id in r.err and "does not exist" in r.err


def test_stale_lock_from_dead_process_is_removed(
    repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = (
        "import os,sys; from e3backup.repo import Repository; from e3backup.store import LocalStore;"
        f"r=Repository.open(LocalStore({str(repo_path)!r}), {PASSWORD!r}.encode());"
        "l=r.lock(exclusive=True).acquire(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(repo.list_ids(FileType.LOCK)) == 1  # left behind by the dead process
    r = run_cli(capsys, "-r", str(repo_path), "check")
    assert r.code == 0, r.err
    assert repo.list_ids(FileType.LOCK) == []


def test_live_lock_gives_clear_message(
    repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = (
        "import sys; from e3backup.repo import Repository; from e3backup.store import LocalStore;"
        f"r=Repository.open(LocalStore({str(repo_path)!r}), {PASSWORD!r}.encode());"
        "l=r.lock(exclusive=True).acquire(); print('locked', flush=True); sys.stdin.read(); l.release()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        r = run_cli(capsys, "-r", str(repo_path), "check")
        assert r.code == 1
        assert f"PID {holder.pid}" in r.err and "host" in r.err and "locked" in r.err
        with pytest.raises(LockError):
            Lock(repo.store, repo.key, exclusive=False).acquire()
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    assert repo.list_ids(FileType.LOCK) == []  # released on exit


def test_lock_refresh_replaces_file(repo: Repository) -> None:
    lk = repo.lock().acquire()
    first = lk.id
    lk.refresh()
    assert lk.id != first and repo.list_ids(FileType.LOCK) == [lk.id]
    lk.release()
    assert repo.list_ids(FileType.LOCK) == []


def test_shared_locks_coexist_exclusive_does_not(repo: Repository) -> None:
    a = repo.lock().acquire()
    b = repo.lock().acquire()
    with pytest.raises(LockError, match="shared lock"):
        repo.lock(exclusive=True).acquire()
    a.release()
    b.release()
    with repo.lock(exclusive=True), pytest.raises(LockError, match="exclusive lock"):
        repo.lock().acquire()


def test_lock_older_than_30_minutes_from_another_host_is_stale(
    repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from e3backup.repo import unpacked
    from e3backup.repo.lock import LockInfo
    from e3backup.repo.timefmt import now_ns

    old = LockInfo("", now_ns() - 31 * 60 * 10**9, True, "another-host", "someone", 4242)
    lock_id, sealed = unpacked.encode(repo.key, old.to_json())
    repo.store.save(Handle(FileType.LOCK, lock_id), sealed)
    fresh = LockInfo("", now_ns(), True, "another-host", "someone", 4242)
    fresh_id, fresh_sealed = unpacked.encode(repo.key, fresh.to_json())
    repo.store.save(Handle(FileType.LOCK, fresh_id), fresh_sealed)
    # a fresh lock on another host cannot be judged dead: it blocks, naming host and PID
    r = run_cli(capsys, "-r", str(repo_path), "check")
    assert r.code == 1 and "another-host" in r.err and "PID 4242" in r.err
    repo.store.remove(Handle(FileType.LOCK, fresh_id))
    # the 31-minute-old one is stale and is removed on the way in
    r = run_cli(capsys, "-r", str(repo_path), "check")
    assert r.code == 0, r.err
    assert repo.list_ids(FileType.LOCK) == []


def test_lock_holder_ignores_sighup_and_sigterm_removes_its_lock(repo: Repository, repo_path: Path) -> None:
    import signal

    src = repo_path.parent / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(os.urandom(2_000_000))
    env = {
        **os.environ,
        "E3BACKUP_PASSWORD": PASSWORD,
        "E3BACKUP_REPOSITORY": str(repo_path),
        "E3BACKUP_PACK_SIZE": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "e3backup", "--limit-upload", "8192", "backup", str(src), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    while not repo.list_ids(FileType.LOCK):
        assert proc.poll() is None
        proc.stdout.readline()
    proc.send_signal(signal.SIGHUP)  # what `restic unlock` sends to probe liveness
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    assert proc.returncode in (0, 143), err  # finished first, or stopped by SIGTERM
    if proc.returncode == 143:
        assert "terminated" in err
    assert repo.list_ids(FileType.LOCK) == []


def test_meanwhile_runs_after_the_lock_is_written_and_before_the_recheck(repo: Repository) -> None:
    seen: list[object] = []
    slept: list[float] = []

    def meanwhile() -> None:
        seen.append(repo.list_ids(FileType.LOCK))  # our lock file exists already
        # a competitor takes an exclusive lock while we wait: the recheck must see it
        seen.append(Lock(repo.store, repo.key, exclusive=True, sleep=lambda s: None)._write())

    lk = Lock(repo.store, repo.key, exclusive=False, sleep=slept.append, meanwhile=meanwhile)
    with pytest.raises(LockError, match="exclusive lock"):
        lk.acquire()
    assert len(seen[0]) == 1  # type: ignore[arg-type]
    assert sum(slept) <= 0.2  # only what is left of the delay is slept
    assert repo.list_ids(FileType.LOCK) == [seen[1]]  # ours was removed, the competitor's stays


def test_meanwhile_failure_removes_the_lock_file(repo: Repository) -> None:
    def meanwhile() -> None:
        raise IntegrityError("index damaged")

    with pytest.raises(IntegrityError, match="index damaged"):
        repo.lock(meanwhile=meanwhile).acquire()
    assert repo.list_ids(FileType.LOCK) == []


def test_background_recheck_returns_at_once_and_reports_a_competitor(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``on_conflict`` the command starts without the 200 ms wait; a competitor that locked
    at the same moment is reported once the delay has passed, and ours stays until release."""
    monkeypatch.setattr("e3backup.repo.lock.RECHECK_DELAY_S", 0.05)
    found: list[LockError] = []
    reported = threading.Event()

    def on_conflict(e: LockError) -> None:
        found.append(e)
        reported.set()

    slept: list[float] = []
    lk = Lock(repo.store, repo.key, exclusive=False, sleep=slept.append, on_conflict=on_conflict)
    # "the same moment": the competitor's lock is written before the background re-check looks,
    # however late this thread gets to write it on a loaded machine
    competitor_written = threading.Event()
    real = lk._conflicts
    checks: list[int] = []

    def conflicts() -> list[object]:
        checks.append(1)
        if len(checks) > 1:  # the re-check, not the up-front check
            assert competitor_written.wait(10)
        return real()  # type: ignore[return-value]

    monkeypatch.setattr(lk, "_conflicts", conflicts)
    lk.acquire()
    assert slept == [] and len(repo.list_ids(FileType.LOCK)) == 1
    competitor = Lock(repo.store, repo.key, exclusive=True)._write()
    competitor_written.set()
    assert reported.wait(10)
    assert "exclusive lock" in str(found[0])
    lk.release()
    assert repo.list_ids(FileType.LOCK) == [competitor]


def test_background_recheck_without_competitor_or_after_release_reports_nothing(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    found: list[LockError] = []
    with Lock(repo.store, repo.key, exclusive=False, on_conflict=found.append):
        pass  # released before the re-check: it never runs
    monkeypatch.setattr("e3backup.repo.lock.RECHECK_DELAY_S", 0.0)
    other = Lock(repo.store, repo.key, exclusive=False)  # shared locks do not conflict
    other.acquire()
    lk = Lock(repo.store, repo.key, exclusive=False, on_conflict=found.append)
    rechecked = threading.Event()
    real = lk._conflicts

    def conflicts() -> list[object]:
        out = real()
        rechecked.set()
        return out  # type: ignore[return-value]

    monkeypatch.setattr(lk, "_conflicts", conflicts)
    lk.acquire()
    assert rechecked.wait(10)  # the re-check ran (and saw the other shared lock)
    lk.release()
    other.release()
    assert found == [] and repo.list_ids(FileType.LOCK) == []


def test_a_failing_background_recheck_stops_the_command(repo: Repository, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `acquire` would have failed: the lock is not confirmed, so the command is told to stop."""
    monkeypatch.setattr("e3backup.repo.lock.RECHECK_DELAY_S", 0.0)
    found: list[LockError] = []
    told = threading.Event()
    lk = Lock(repo.store, repo.key, exclusive=False, on_conflict=lambda e: (found.append(e), told.set()))

    calls: list[int] = []
    real = lk._conflicts

    def unreachable_on_recheck() -> list[object]:
        calls.append(1)
        if len(calls) > 1:  # the up-front check passes, the re-check cannot reach the storage
            raise IntegrityError("storage said no")
        return real()  # type: ignore[return-value]

    monkeypatch.setattr(lk, "_conflicts", unreachable_on_recheck)
    lk.acquire()
    assert told.wait(10)
    lk.release()
    assert "could not re-check the repository's locks: storage said no" in str(found[0])


def test_a_competitor_already_locked_is_refused_up_front_with_background_recheck(repo: Repository) -> None:
    Lock(repo.store, repo.key, exclusive=True)._write()
    with pytest.raises(LockError, match="exclusive lock"):
        Lock(repo.store, repo.key, exclusive=False, on_conflict=lambda e: None).acquire()


def test_confirm_waits_for_the_background_recheck_and_raises_what_it_found(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writing command (an image backup) calls ``confirm`` before its index: it blocks until
    the background re-check has run and raises the competitor it found; without one it returns."""
    monkeypatch.setattr("e3backup.repo.lock.RECHECK_DELAY_S", 0.0)
    found: list[LockError] = []
    lk = Lock(repo.store, repo.key, exclusive=False, on_conflict=found.append)
    real = lk._conflicts
    go = threading.Event()
    calls: list[int] = []

    def conflicts() -> list[object]:
        calls.append(1)
        if len(calls) > 1:  # the re-check: held until the competitor is written
            assert go.wait(10)
        return real()  # type: ignore[return-value]

    monkeypatch.setattr(lk, "_conflicts", conflicts)
    lk.acquire()

    def competitor_locks() -> None:
        Lock(repo.store, repo.key, exclusive=True)._write()
        go.set()

    threading.Thread(target=competitor_locks).start()
    with pytest.raises(LockError, match="exclusive lock"):
        lk.confirm()  # returned before the re-check, it would have raised nothing
    assert len(found) == 1 and lk.settled() is found[0]
    lk.release()
    for other in repo.list_ids(FileType.LOCK):
        repo.store.remove(Handle(FileType.LOCK, other))
    with Lock(repo.store, repo.key, exclusive=False, on_conflict=found.append) as quiet:
        quiet.confirm()
        assert quiet.settled() is None
    assert len(found) == 1
