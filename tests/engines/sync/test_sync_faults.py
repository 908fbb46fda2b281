"""The sync under faults, against the real SeaweedFS: a vanished or emptied source, cancel in
the middle, the S3 server restarted in the middle, a file whose reads fail (a real FUSE file
returning EIO), and credentials kept out of every log line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from e3backup.engines.sync import SourceMissing, SyncOptions, SyncResult, run_sync
from e3backup.errors import Cancelled
from e3backup.events import Event, EventCode
from e3backup.progress import Progress
from e3backup.store.retry import RetryPolicy
from tests.plugins.seaweedfs import SeaweedServer
from tests.sources.faultyfuse import faulty_image

from .helpers import bucket_listing, make_tree, source_listing
from .test_mirror_s3 import assert_mirror, target


class AfterFiles(Progress):
    """A progress that calls ``action`` once, when ``n`` files have been transferred."""

    def __init__(self, n: int, action: Any) -> None:
        super().__init__(mode="quiet")
        self.n, self.action, self.fired = n, action, False

    def add(self, files: int = 0, nbytes: int = 0, current: str | None = None) -> None:
        super().add(files, nbytes, current)
        if not self.fired and self.c.files_done >= self.n:
            self.fired = True
            self.action()


def sync(opts: SyncOptions, events: list[Event] | None = None, progress: Progress | None = None,
         cancel: threading.Event | None = None) -> SyncResult:
    with progress or Progress(mode="quiet") as p:
        return run_sync(opts, p, (events if events is not None else []).append, cancel)


def test_vanished_source_deletes_nothing(s3_server: SeaweedServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    opts = SyncOptions((str(src),), target(s3_server, bucket), max_delete_percent=100)  # even unguarded
    sync(opts)
    before = bucket_listing(s3_server.client(), bucket)
    src.rename(tmp_path / "unmounted")
    events: list[Event] = []
    with pytest.raises(SourceMissing, match="no source folder exists"):
        sync(opts, events)
    assert [e.code for e in events] == [EventCode.SYNC_SOURCE_MISSING]
    assert bucket_listing(s3_server.client(), bucket) == before


def test_emptied_source_is_refused_by_the_guard(s3_server: SeaweedServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    opts = SyncOptions((str(src),), target(s3_server, bucket))
    sync(opts)
    before = bucket_listing(s3_server.client(), bucket)
    subprocess.run(["rm", "-rf", str(src)], check=True)
    src.mkdir()
    (src / "left.txt").write_text("one file came back")
    events: list[Event] = []
    result = sync(opts, events)
    assert result.deletes_refused == len(before) and result.files_deleted == 0 and not result.ok
    refused = [e for e in events if e.code is EventCode.SYNC_DELETE_REFUSED]
    assert len(refused) == 1
    assert refused[0].message.startswith(f"refused to delete {len(before)} of the {len(before)} files")
    assert "max_delete limit of 50 %" in refused[0].message
    after = bucket_listing(s3_server.client(), bucket)
    assert set(after) == set(before) | {"left.txt"}  # the new file went up, nothing went away
    # the operator confirms: deleting everything is what they want
    confirmed = sync(SyncOptions((str(src),), target(s3_server, bucket), max_delete_percent=100))
    assert confirmed.files_deleted == len(before)
    assert_mirror(s3_server, bucket, src)


def test_cancel_mid_sync_stops_and_deletes_nothing(s3_server: SeaweedServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}").write_bytes(os.urandom(256 * 1024))
    bucket = s3_server.make_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="stale", Body=b"gone from the source")
    cancel = threading.Event()
    # 40 files of 256 KiB at 1 MiB/s would take 10 s; cancelled after the second file
    opts = SyncOptions((str(src),), target(s3_server, bucket), transfers=2, limit_upload=1024,
                       state_dir=tmp_path / "state")
    with pytest.raises(Cancelled):
        sync(opts, progress=AfterFiles(2, cancel.set), cancel=cancel)
    keys = set(bucket_listing(s3_server.client(), bucket))
    assert "stale" in keys  # deletions come last: none happened
    assert 2 <= len(keys) - 1 < 40
    result = sync(SyncOptions((str(src),), target(s3_server, bucket), max_delete_percent=100,
                              state_dir=tmp_path / "state"))
    assert result.files_transferred == 40 - (len(keys) - 1)  # what got there is not sent again
    assert_mirror(s3_server, bucket, src)


def test_s3_server_restarted_mid_sync(s3_running: SeaweedServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src, big=20 << 20)
    bucket = s3_running.make_bucket()
    restarted = threading.Event()

    def restart() -> None:
        def body() -> None:
            s3_running.stop(kill=True)
            s3_running.start()
            restarted.set()

        threading.Thread(target=body, daemon=True).start()

    opts = SyncOptions((str(src),), target(s3_running, bucket), transfers=2,
                       retry=RetryPolicy(max_attempts=100, max_time=120, base_delay=0.2, max_delay=2))
    result = sync(opts, progress=AfterFiles(5, restart))
    assert restarted.wait(60)
    assert not result.errors and result.files_transferred == result.source_files
    assert_mirror(s3_running, bucket, src)


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs FUSE")
def test_a_file_that_cannot_be_read_is_named_and_the_others_are_synced(
    s3_server: SeaweedServer, tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    image = tmp_path / "disk.img"
    image.write_bytes(os.urandom(1 << 20))
    bucket = s3_server.make_bucket()
    with faulty_image(image, [(512 * 1024, 4096)]) as bad:
        events: list[Event] = []
        result = sync(SyncOptions((str(src), str(bad.parent)), target(s3_server, bucket)), events)
        mount = bad.parent.name
    assert result.errors == [f"{bad}: Input/output error"]
    failed = [e for e in events if e.code is EventCode.SYNC_FILE_FAILED]
    assert [e.details["path"] for e in failed] == [str(bad)]
    got = bucket_listing(s3_server.client(), bucket)
    assert f"{mount}/disk.img" not in got
    want = {f"src/{k}": v for k, v in source_listing(src).items()}
    assert {k: v for k, v in got.items()} == want


def test_credentials_never_in_output_or_debug_logs(s3_server: SeaweedServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    (src / "bad").mkdir()
    bucket = s3_server.make_bucket()
    env = {**os.environ, **s3_server.env()}
    env.pop("AWS_CA_BUNDLE", None)
    url = s3_server.url(bucket, "p")
    out = subprocess.run([sys.executable, "-m", "e3backup.cli.main", "--debug", "sync", "--json", str(src), url],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "DEBUG botocore" in out.stderr or "DEBUG" in out.stderr  # the debug logs were really on
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key[::-1]}
    denied = subprocess.run([sys.executable, "-m", "e3backup.cli.main", "--debug", "sync", str(src), url],
                            env=wrong, capture_output=True, text=True)
    assert denied.returncode == 1 and "access denied" in denied.stderr.lower()
    for text in (out.stdout, out.stderr, denied.stdout, denied.stderr):
        assert s3_server.secret_key not in text
        assert s3_server.secret_key[::-1] not in text
