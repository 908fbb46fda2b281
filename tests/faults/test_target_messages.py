"""Defect 9 of issue #28: a restore target that cannot take writes, and an AWS-style S3 URL, are
refused with a message saying what is wrong with which target, before anything is written."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import PASSWORD, e3

ENV = {"E3BACKUP_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def image_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("targets")
    repo, disk = base / "repo", base / "disk.img"
    disk.write_bytes(os.urandom(1 << 20) + bytes(1 << 20))
    e3("-r", str(repo), "init", env=ENV)
    e3("-r", str(repo), "image", "backup", str(disk), env=ENV)
    src = base / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    e3("-r", str(repo), "backup", str(src), env=ENV)
    return repo


def _refused(repo: Path, *args: str) -> str:
    p = e3("-r", str(repo), *args, env=ENV, check=False)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    return p.stderr.strip()


def test_a_kernel_file_is_no_target(image_repo: Path) -> None:
    line = _refused(image_repo, "image", "restore", "latest", "--target", "/proc/version", "--force")
    assert line == ("e3backup: error: restore target /proc/version is read-only: "
                    "it is on the kernel's proc file system, not storage")


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.root
def test_a_read_only_mount(image_repo: Path, read_only_mount: Path) -> None:
    target = read_only_mount / "disk.img"
    line = _refused(image_repo, "image", "restore", "latest", "--target", str(target))
    assert line == (f"e3backup: error: restore target {target} cannot be created: directory "
                    f"{read_only_mount} is read-only: its file system is mounted read-only")
    line = _refused(image_repo, "restore", "latest", "--target", str(read_only_mount))
    assert line == (f"e3backup: error: restore target {read_only_mount} is read-only: "
                    "its file system is mounted read-only")
    line = _refused(image_repo, "restore", "latest", "--target", str(read_only_mount / "a" / "b"))
    assert f"directory {read_only_mount} is read-only" in line


@pytest.fixture
def read_only_loop(tmp_path: Path) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    backing = tmp_path / "backing"
    backing.write_bytes(bytes(4 << 20))
    dev = subprocess.run(["losetup", "--find", "--show", "--read-only", str(backing)],
                         check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.mark.root
def test_a_read_only_block_device(image_repo: Path, read_only_loop: str) -> None:
    line = _refused(image_repo, "image", "restore", "latest", "--target", read_only_loop)
    assert line == f"e3backup: error: restore target {read_only_loop} is read-only: the block device is set read-only"


def test_an_aws_style_s3_url_says_what_to_write() -> None:
    p = e3("-r", "s3://bucket/some/prefix", "snapshots", env=ENV, check=False)
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "e3backup: error: 's3://bucket/some/prefix' is the AWS CLI's form, which names no endpoint: write "
        "s3:https://HOST[:PORT]/bucket/some/prefix (on AWS: s3:https://s3.REGION.amazonaws.com/bucket/some/prefix)"
    )
