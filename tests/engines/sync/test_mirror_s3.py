"""A mirror in a real S3 bucket (SeaweedFS): after every sync the bucket lists exactly the source
(names, sizes, content MD5 of the downloaded bytes, modification times from the metadata), and
the real rclone, reading the same bucket, agrees."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from e3backup.engines.sync import Compare, S3Target, SyncOptions, SyncResult, run_sync
from e3backup.engines.sync.s3_target import PART_SIZE
from e3backup.events import Event, EventCode
from e3backup.progress import Progress
from e3backup.sources.excludes import Excluder
from tests.plugins.seaweedfs import SeaweedServer

from .helpers import bucket_listing, make_tree, source_listing


def target(s3: SeaweedServer, bucket: str, prefix: str = "") -> S3Target:
    return S3Target(s3.endpoint, bucket, prefix, access_key=s3.access_key, secret_key=s3.secret_key)


def sync(opts: SyncOptions, events: list[Event] | None = None, cancel: threading.Event | None = None) -> SyncResult:
    with Progress(mode="quiet") as progress:
        return run_sync(opts, progress, (events if events is not None else []).append, cancel)


def assert_mirror(s3: SeaweedServer, bucket: str, src: Path, prefix: str = "") -> None:
    want = source_listing(src)
    got = bucket_listing(s3.client(), bucket, prefix)
    assert sorted(got) == sorted(want)
    for key, (size, md5, mtime) in want.items():
        assert got[key] == (size, md5, mtime), key


def rclone_check(s3: SeaweedServer, src: Path, bucket: str, prefix: str = "") -> None:
    """The real rclone compares sizes and MD5s of the source and the bucket, both ways."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_E3_TYPE="s3", RCLONE_CONFIG_E3_PROVIDER="Other",
               RCLONE_CONFIG_E3_ENDPOINT=s3.endpoint, RCLONE_CONFIG_E3_ACCESS_KEY_ID=s3.access_key,
               RCLONE_CONFIG_E3_SECRET_ACCESS_KEY=s3.secret_key)
    dest = f"e3:{bucket}/{prefix}".rstrip("/")
    out = subprocess.run(["rclone", "check", str(src), dest, "--one-way=false"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.fixture
def rclone() -> None:
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not installed (scripts/setup.sh installs it)")


def test_create_modify_delete_rename_unchanged(s3_server: SeaweedServer, tmp_path: Path, rclone: None) -> None:
    src = tmp_path / "src"
    make_tree(src, big=PART_SIZE * 2 + 12345)  # the big file goes up in three parts
    bucket = s3_server.make_bucket()
    opts = SyncOptions((str(src),), target(s3_server, bucket, "mirror/host1"), state_dir=tmp_path / "state")

    first = sync(opts)
    assert first.files_transferred == first.source_files == len(source_listing(src))
    assert not first.errors
    assert_mirror(s3_server, bucket, src, "mirror/host1")
    rclone_check(s3_server, src, bucket, "mirror/host1")

    # modify (same size, new content and time), grow, delete, rename, add into a new folder
    (src / "a b c.txt").write_bytes(b"A" * (src / "a b c.txt").stat().st_size)
    os.utime(src / "a b c.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    with open(src / "many" / "0" / "f03.dat", "ab") as f:
        f.write(b"more")
    (src / "plus+sign.txt").unlink()
    (src / "d1" / "d 2").rename(src / "d1" / "renamed d2")
    (src / "new" / "folder").mkdir(parents=True)
    (src / "new" / "folder" / "n.txt").write_text("new")
    second = sync(opts)
    assert (second.files_new, second.files_changed) == (2, 2)  # renamed deep.bin + n.txt; a b c + f03
    assert second.files_deleted == 2  # plus+sign and the old deep.bin
    assert second.files_unchanged == second.source_files - 4
    assert_mirror(s3_server, bucket, src, "mirror/host1")
    rclone_check(s3_server, src, bucket, "mirror/host1")

    third = sync(opts)
    assert (third.files_transferred, third.files_deleted, third.bytes_transferred) == (0, 0, 0)
    assert third.files_unchanged == third.source_files


def test_unchanged_run_needs_no_head_with_the_cache_and_one_per_file_without(
    s3_server: SeaweedServer, tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    opts = SyncOptions((str(src),), target(s3_server, bucket), state_dir=tmp_path / "state")
    sync(opts)
    heads: list[str] = []

    def count(**kw: Any) -> None:
        heads.append(kw["params"]["url_path"])

    from e3backup.engines.sync import s3_target

    real_init = s3_target.S3Destination.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        self.bucket.client.meta.events.register("before-call.s3.HeadObject", count)

    s3_target.S3Destination.__init__ = init  # type: ignore[method-assign]
    try:
        assert sync(opts).files_unchanged == len(source_listing(src))
        assert heads == []
        no_cache = SyncOptions((str(src),), target(s3_server, bucket), state_dir=tmp_path / "other-machine")
        again = sync(no_cache)  # e.g. a reinstalled machine: judged by the mtime metadata, by HEAD
        assert (again.files_transferred, again.files_unchanged) == (0, len(source_listing(src)))
        assert len(heads) == len(source_listing(src))
    finally:
        s3_target.S3Destination.__init__ = real_init  # type: ignore[method-assign]


def test_checksum_mode_finds_a_change_that_kept_size_and_time(s3_server: SeaweedServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    f = src / "many" / "1" / "f07.dat"
    by_time = SyncOptions((str(src),), target(s3_server, bucket), state_dir=tmp_path / "state")
    sync(by_time)
    st = f.stat()
    f.write_bytes(os.urandom(st.st_size))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sync(by_time).files_transferred == 0  # size and time alike: the mtime mode trusts them
    by_sum = SyncOptions((str(src),), target(s3_server, bucket), compare=Compare.CHECKSUM,
                         state_dir=tmp_path / "state")
    result = sync(by_sum)
    assert (result.files_changed, result.files_unchanged) == (1, result.source_files - 1)
    assert_mirror(s3_server, bucket, src)


def test_excludes_follow_the_files_engine_and_excluded_objects_are_left_alone(
    s3_server: SeaweedServer, tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    sync(SyncOptions((str(src),), target(s3_server, bucket)))
    excl = Excluder(["*.dat", "d1/d 2"])
    result = sync(SyncOptions((str(src),), target(s3_server, bucket), excluder=excl, max_delete_percent=100))
    assert result.files_deleted == 0  # already there, now excluded: not ours to delete
    fresh = s3_server.make_bucket()
    sync(SyncOptions((str(src),), target(s3_server, fresh), excluder=excl))
    keys = set(bucket_listing(s3_server.client(), fresh))
    assert not any(k.endswith(".dat") for k in keys)
    assert not any(k.startswith("d1/d 2/") for k in keys)
    assert "d1/empty" in keys and "a b c.txt" in keys


def test_several_sources_side_by_side_and_keep_deleted(s3_server: SeaweedServer, tmp_path: Path) -> None:
    a, b = tmp_path / "photos", tmp_path / "docs"
    make_tree(a)
    (b / "x").mkdir(parents=True)
    (b / "x" / "letter.txt").write_text("dear")
    bucket = s3_server.make_bucket()
    opts = SyncOptions((str(a), str(b)), target(s3_server, bucket), delete=False)
    sync(opts)
    keys = set(bucket_listing(s3_server.client(), bucket))
    assert keys == {f"photos/{k}" for k in source_listing(a)} | {"docs/x/letter.txt"}
    (b / "x" / "letter.txt").unlink()
    result = sync(opts)
    assert (result.files_deleted, result.files_kept) == (0, 1)
    assert "docs/x/letter.txt" in set(bucket_listing(s3_server.client(), bucket))


def test_a_backslash_name_is_refused_and_named_not_mangled(s3_server: SeaweedServer, tmp_path: Path) -> None:
    """SeaweedFS stores ``a\\b`` as ``a/b``; syncing it would delete it again next run."""
    src = tmp_path / "src"
    make_tree(src, backslash=True)
    bucket = s3_server.make_bucket()
    opts = SyncOptions((str(src),), target(s3_server, bucket))
    for _ in range(2):
        result = sync(opts)
        assert result.errors == [f"{src}/back\\slash.txt: a backslash in a name cannot be kept in an S3 "
                                 "key on every server"]
        assert result.files_deleted == 0
    (src / "back\\slash.txt").unlink()
    assert_mirror(s3_server, bucket, src)


def test_dry_run_changes_nothing(s3_server: SeaweedServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    bucket = s3_server.make_bucket()
    events: list[Event] = []
    result = sync(SyncOptions((str(src),), target(s3_server, bucket), dry_run=True), events)
    assert result.files_new == result.source_files and result.files_transferred == 0
    assert bucket_listing(s3_server.client(), bucket) == {}
    started = [e for e in events if e.code is EventCode.SYNC_STARTED]
    assert started and started[0].message.startswith("dry run: would copy")


@pytest.mark.slow
def test_one_gib_file(s3_server: SeaweedServer, tmp_path: Path) -> None:
    """The 1 GiB file of the issue (slow: 20-70 s), uploaded in parallel parts, then unchanged."""
    src = tmp_path / "src"
    make_tree(src, big=1 << 30)
    bucket = s3_server.make_bucket()
    opts = SyncOptions((str(src),), target(s3_server, bucket), state_dir=tmp_path / "state")
    assert sync(opts).bytes_transferred == sum(v[0] for v in source_listing(src).values())
    assert_mirror(s3_server, bucket, src)
    assert sync(opts).bytes_transferred == 0


def test_rclone_reads_the_modification_times_we_write(s3_server: SeaweedServer, tmp_path: Path, rclone: None) -> None:
    """The ``mtime`` metadata is rclone's: ``rclone lsjson`` shows each source file's time."""
    import json
    from datetime import datetime

    src = tmp_path / "src"
    src.mkdir()
    for i, ns in enumerate((1_600_000_000_123_456_789, 1_700_000_000_000_000_000, 946_684_800_999_999_999)):
        (src / f"f{i}").write_text(str(i))
        os.utime(src / f"f{i}", ns=(ns, ns))
    bucket = s3_server.make_bucket()
    sync(SyncOptions((str(src),), target(s3_server, bucket)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    env.update(RCLONE_CONFIG="/dev/null", RCLONE_CONFIG_E3_TYPE="s3", RCLONE_CONFIG_E3_PROVIDER="Other",
               RCLONE_CONFIG_E3_ENDPOINT=s3_server.endpoint, RCLONE_CONFIG_E3_ACCESS_KEY_ID=s3_server.access_key,
               RCLONE_CONFIG_E3_SECRET_ACCESS_KEY=s3_server.secret_key)
    out = subprocess.run(["rclone", "lsjson", f"e3:{bucket}"], env=env, capture_output=True, text=True, check=True)
    for entry in json.loads(out.stdout):
        want = (src / entry["Path"]).stat().st_mtime_ns
        got = datetime.fromisoformat(entry["ModTime"].replace("Z", "+00:00")).timestamp()
        assert abs(got * 1e9 - want) < 1e3, entry  # within a microsecond (rclone parses a float)
