"""Defect 2 of issue #28: temporary files of killed saves are found, reported and removed.

A real process is SIGKILLed while its pack is still under the temporary name; ``check`` then
reports the file, the next backup removes it (a live writer's is left alone) and ``prune``, which
holds the exclusive lock, also removes temporaries whose writer is unknown or on another host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3backup.store import LocalStore
from e3backup.store.temporaries import parse_temporary

from ..helpers import PASSWORD, e3, restic
from ..plugins.seaweedfs import SeaweedServer

pytestmark = pytest.mark.restic

ENV = {"E3BACKUP_PASSWORD": PASSWORD}

_STALL_IN_SAVE = """
import os, sys
from e3backup.store import LocalStore
from e3backup.store.base import FileType, Handle

def stall(fd):  # the pack is written under its temporary name, not yet renamed
    print("written", flush=True)
    sys.stdin.read()

os.fsync = stall
LocalStore(sys.argv[1]).save(Handle(FileType.PACK, "ab" * 32), os.urandom(100_000))
"""


def _writer(repo: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", _STALL_IN_SAVE, str(repo)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "written\n"
    return p


def _kill(p: subprocess.Popen[str]) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.wait()


def _temporaries(repo: Path) -> list[str]:
    return sorted(t.path for t in LocalStore(repo).temporaries())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    repo, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(50_000))
    e3("-r", str(repo), "init", env=ENV)
    yield repo, src


def test_check_reports_and_the_next_backup_removes_a_killed_writers_temporary(setup: tuple[Path, Path]) -> None:
    repo, src = setup
    _kill(_writer(repo))
    left = _temporaries(repo)
    assert len(left) == 1 and left[0].startswith("data/ab/" + "ab" * 32 + "-tmp-")

    p = e3("-r", str(repo), "check", env=ENV)
    assert left[0] in p.stdout + p.stderr and "interrupted" in p.stdout + p.stderr

    p = e3("-r", str(repo), "backup", str(src), env=ENV)
    assert "removed 1 temporary file left by interrupted runs" in p.stderr, p.stderr
    assert _temporaries(repo) == []
    restic(repo, "check", "--read-data")


def test_a_live_writers_temporary_is_left_alone(setup: tuple[Path, Path]) -> None:
    repo, src = setup
    p = _writer(repo)
    try:
        e3("-r", str(repo), "backup", str(src), env=ENV)
        assert len(_temporaries(repo)) == 1
    finally:
        _kill(p)


def test_prune_removes_temporaries_of_unknown_and_other_hosts_writers(setup: tuple[Path, Path]) -> None:
    repo, src = setup
    e3("-r", str(repo), "backup", str(src), env=ENV)
    old_style = repo / "data" / "cd" / ("cd" * 32 + "-tmp-4242-0badf00d")  # before hosts were recorded
    other_host = repo / "index" / ("ef" * 32 + "-tmp-elsewhere-1-12345678")
    for f in (old_style, other_host):
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"partial")
    t = parse_temporary(str(other_host.relative_to(repo)), 7)
    assert t is not None and t.host == "elsewhere" and t.pid == 1
    e3("-r", str(repo), "backup", str(src), env=ENV)
    assert len(_temporaries(repo)) == 2  # a backup cannot know whether their writers live
    p = e3("-r", str(repo), "prune", env=ENV)
    assert "removed 2 temporary files" in p.stdout + p.stderr
    assert _temporaries(repo) == []
    restic(repo, "check", "--read-data")


def test_prune_aborts_unfinished_s3_multipart_uploads(s3_server: SeaweedServer, tmp_path: Path) -> None:
    """e3backup's PUTs are single requests; restic uploads large packs in parts, and a killed
    restic leaves the upload open (the server keeps its parts). check names it, prune aborts it."""
    bucket = s3_server.make_bucket()
    url = s3_server.url(bucket, "repo")
    env = {**ENV, **s3_server.env()}
    e3("-r", url, "init", env=env)
    client = s3_server.client()
    key = "repo/data/ab/" + "ab" * 32
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=os.urandom(1000))
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    e3("-r", url, "backup", str(src), env=env)  # owners unknown: a backup leaves it
    assert [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == [upload]
    p = e3("-r", url, "check", env=env)
    assert f"unfinished multipart upload of {key}" in p.stdout + p.stderr
    e3("-r", url, "prune", env=env)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
