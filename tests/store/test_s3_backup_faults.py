"""Whole backups against S3 faults: the server killed, restarted, and a storm of errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e3backup.engines.files import BackupOptions, run_backup
from e3backup.repo import Repository
from e3backup.restore.files import RestoreOptions, run_restore
from e3backup.store import open_store
from e3backup.store.retry import RetryPolicy
from tests.plugins.faultproxy import FaultProxy
from tests.plugins.seaweedfs import SeaweedServer

from ..engines.trees import describe
from ..helpers import PASSWORD, restic

pytestmark = [pytest.mark.slow, pytest.mark.restic]


def _source(root: Path, files: int = 16) -> Path:
    src = root / "src"
    src.mkdir()
    for i in range(files):
        (src / f"f{i:02d}").write_bytes(os.urandom(2 * 1024 * 1024))
    (src / "small.txt").write_text("small\n")
    return src


def _env(server: SeaweedServer, url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **server.env(),
        "E3BACKUP_REPOSITORY": url,
        "E3BACKUP_PASSWORD": PASSWORD,
        "E3BACKUP_PACK_SIZE": "1",
        **extra,
    }


def _e3(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "e3backup", *args], env=env, text=True, capture_output=True)
    if check and p.returncode != 0:
        raise AssertionError(f"e3backup {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _packs(server: SeaweedServer, bucket: str) -> int:
    resp = server.client().list_objects_v2(Bucket=bucket, Prefix="repo/data/")
    return int(resp.get("KeyCount", 0))


def _start_backup(env: dict[str, str], src: Path) -> subprocess.Popen[str]:
    # throttled, so the fault lands while data is still being uploaded
    return subprocess.Popen(
        [sys.executable, "-m", "e3backup", "--limit-upload", "4096", "backup", str(src), "--json"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_packs(server: SeaweedServer, bucket: str, proc: subprocess.Popen[str], n: int) -> None:
    deadline = time.monotonic() + 120
    while _packs(server, bucket) < n:
        assert proc.poll() is None, "the backup ended before the fault could be injected"
        assert time.monotonic() < deadline
        time.sleep(0.05)  # polling for a state, not timing a result


def test_server_killed_mid_backup_fails_clearly_and_loses_nothing(s3_running: SeaweedServer, tmp_path: Path) -> None:
    server = s3_running
    bucket = server.make_bucket()
    url = server.url(bucket, "repo")
    # the killed backup gives up after 3 s of retries; the commands after the restart keep the
    # default window (a restarted SeaweedFS answers 500 for a moment while its volumes come back)
    env = _env(server, url, E3BACKUP_CACHE_DIR=str(tmp_path / "cache"))
    src = _source(tmp_path)
    _e3(env, "init")
    proc = _start_backup({**env, "E3BACKUP_RETRY_MAX_TIME": "3"}, src)
    _wait_for_packs(server, bucket, proc, 4)
    server.stop(kill=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("e3backup: error:") and server.endpoint in last and "cannot reach" in last, err
    server.start()
    # the dead process's lock is stale: unlock removes it (restic's check would refuse otherwise)
    _e3(env, "unlock")
    assert _e3(env, "check", "--read-data").returncode == 0
    restic(url, "check", "--read-data", env=server.env())
    _e3(env, "backup", str(src))
    _e3(env, "restore", "latest", "--target", str(tmp_path / "out"))
    assert describe(tmp_path / "out" / str(src).lstrip("/")) == describe(src)
    restic(url, "check", "--read-data", env=server.env())


def test_server_restarted_within_the_retry_window_backup_completes(s3_running: SeaweedServer, tmp_path: Path) -> None:
    server = s3_running
    bucket = server.make_bucket()
    url = server.url(bucket, "repo")
    env = _env(server, url, E3BACKUP_RETRY_MAX_TIME="120", E3BACKUP_CACHE_DIR=str(tmp_path / "cache"))
    src = _source(tmp_path)
    _e3(env, "init")
    proc = _start_backup(env, src)
    _wait_for_packs(server, bucket, proc, 4)
    server.stop(kill=True)
    server.start()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert '"message_type": "summary"' in out.strip().splitlines()[-1]
    restic(url, "check", "--read-data", env=server.env())
    _e3(env, "restore", "latest", "--target", str(tmp_path / "out"))
    assert describe(tmp_path / "out" / str(src).lstrip("/")) == describe(src)


def test_backup_through_a_storm_of_errors(s3_server: SeaweedServer, fault_proxy: FaultProxy, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket()
    fault_proxy.set(slowdown=0.15, error500=0.05, reset_request=0.05, reset_response=0.05)
    policy = RetryPolicy(max_attempts=60, max_time=120, base_delay=0.005, max_delay=0.05)
    store = open_store(fault_proxy.url(bucket, "repo"), **s3_server.store_options(), retry=policy)
    src = _source(tmp_path, files=8)
    repo = Repository.init(store, PASSWORD.encode())
    repo.pack_size = 1024 * 1024
    result = run_backup(repo, BackupOptions(paths=[str(src)]))
    assert result.errors == [] and result.files_new == 9
    assert sum(fault_proxy.counts[k] for k in ("slowdown", "error500", "reset_request", "reset_response")) > 5
    # judged directly against the server, without the proxy
    url = s3_server.url(bucket, "repo")
    restic(url, "check", "--read-data", env=s3_server.env())
    direct = Repository.open(open_store(url, **s3_server.store_options()), PASSWORD.encode())
    assert [s.id for s in direct.snapshots()] == [result.snapshot_id]
    run_restore(direct, RestoreOptions(str(tmp_path / "out"), snapshot="latest"))
    assert describe(tmp_path / "out" / str(src).lstrip("/")) == describe(src)
