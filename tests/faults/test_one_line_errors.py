"""Defect 7 of issue #28: a failed command prints one line on stderr (the cause and the object);
everything else (events, library warnings, tracebacks) only with ``--debug``.

Each case runs the real CLI process and captures its stderr.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import PASSWORD, e3
from ..plugins.seaweedfs import SeaweedServer

ENV = {"E3BACKUP_PASSWORD": PASSWORD}


def _one_line(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("e3backup: error: "), p.stderr
    return lines[0]


def test_image_backup_of_a_missing_device(tmp_path: Path) -> None:
    e3("-r", str(tmp_path / "repo"), "init", env=ENV)
    line = _one_line(e3("-r", str(tmp_path / "repo"), "image", "backup", "/dev/e3-no-such-disk", env=ENV, check=False))
    assert line == "e3backup: error: cannot open /dev/e3-no-such-disk: No such file or directory"
    debug = e3("-r", str(tmp_path / "repo"), "--debug", "image", "backup", "/dev/e3-no-such-disk", env=ENV, check=False)
    assert "Traceback" in debug.stderr  # the details are there with --debug


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs: a repository on it fills up during the first backup."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.root
def test_out_of_space(full_disk: Path, tmp_path: Path) -> None:
    repo = full_disk / "repo"
    e3("-r", str(repo), "init", env=ENV)
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(8 << 20))
    for args in (["backup", str(src)], ["image", "backup", str(src / "big")]):
        line = _one_line(e3("-r", str(repo), *args, env=ENV, check=False))
        assert f"cannot write {repo}/data/" in line and "the repository's file system is full" in line, line


def test_s3_failures(s3_server: SeaweedServer, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket()
    url = s3_server.url(bucket, "repo")
    env = {**ENV, **s3_server.env()}
    e3("-r", url, "init", env=env)
    wrong = {**env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    line = _one_line(e3("-r", url, "snapshots", env=wrong, check=False))
    assert "secret key" in line and "access denied" in line
    # a dead endpoint: one line, however many requests gave up (no botocore/urllib3 warnings)
    dead = SeaweedServer(tmp_path / "dead")  # ports chosen, never started
    line = _one_line(e3("-r", f"s3:{dead.endpoint}/{bucket}/repo", "--retry-max-time", "1", "snapshots",
                        env=env, check=False))
    assert f"cannot reach {dead.endpoint}" in line


def test_warnings_of_a_finished_image_backup_are_shown(tmp_path: Path) -> None:
    """What a successful image backup has to say (reading live, no partition table) stays."""
    e3("-r", str(tmp_path / "repo"), "init", env=ENV)
    disk = tmp_path / "disk.img"
    disk.write_bytes(os.urandom(1 << 20))
    p = e3("-r", str(tmp_path / "repo"), "image", "backup", str(disk), env=ENV)
    assert "warning: reading the whole disk in full" in p.stderr
    assert "info:" not in p.stderr  # progress events: only with --debug
