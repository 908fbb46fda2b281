"""Defects 5 and 6 of issue #28: which snapshot a command means.

5. One corrupt snapshot file does not fail ``snapshots``: the others are listed, the bad one is
   named (a warning; with ``--json`` a JSON line on stderr), and ``latest`` is the newest readable.
6. ``latest`` in an image command is the newest image snapshot (``--host``/``--tag``/``--path``
   narrow it as restic's filters do), never a newer files snapshot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..helpers import PASSWORD, e3, restic

pytestmark = pytest.mark.restic

ENV = {"E3BACKUP_PASSWORD": PASSWORD}


def _flip(path: Path, offset: int) -> None:
    os.chmod(path, 0o600)
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x40
    path.write_bytes(bytes(data))


def _ids(repo: Path) -> list[str]:
    return [s["id"] for s in json.loads(e3("-r", str(repo), "snapshots", "--json", env=ENV).stdout)]


def test_a_corrupt_snapshot_file_is_named_and_skipped(tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    e3("-r", str(repo), "init", env=ENV)
    for i in range(3):
        (src / "f").write_bytes(f"version {i}".encode())
        e3("-r", str(repo), "backup", str(src), "--tag", f"v{i}", env=ENV)
    first, second, newest = _ids(repo)
    _flip(repo / "snapshots" / newest, 40)

    p = e3("-r", str(repo), "snapshots", env=ENV)
    assert first[:8] in p.stdout and second[:8] in p.stdout and newest[:8] not in p.stdout
    assert p.stderr.count("\n") == 1 and newest in p.stderr and "unreadable" in p.stderr, p.stderr

    p = e3("-r", str(repo), "snapshots", "--json", env=ENV)
    assert [s["id"] for s in json.loads(p.stdout)] == [first, second]
    warning = json.loads(p.stderr)
    assert warning["snapshot"] == newest and warning["message_type"] == "warning"

    # latest: the newest readable one (restic 0.14 refuses: "latest snapshot ... not found")
    p = e3("-r", str(repo), "restore", "latest", "--target", str(tmp_path / "out"), env=ENV)
    assert newest in p.stderr
    assert (tmp_path / "out" / str(src).lstrip("/") / "f").read_bytes() == b"version 1"
    assert restic(repo, "restore", "latest", "--target", str(tmp_path / "r"), check=False).returncode == 1
    # and a backup still finds its parent
    e3("-r", str(repo), "backup", str(src), env=ENV)


def _disk(path: Path, seed: int) -> bytes:
    data = bytes([seed]) * (1 << 20) + os.urandom(1 << 20)
    path.write_bytes(data)
    return data


def test_image_latest_means_the_newest_image_snapshot(tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"files")
    e3("-r", str(repo), "init", env=ENV)
    disk_a, disk_b = tmp_path / "a.img", tmp_path / "b.img"
    a = _disk(disk_a, 1)
    e3("-r", str(repo), "image", "backup", str(disk_a), "--tag", "daily", env=ENV)
    b = _disk(disk_b, 2)
    e3("-r", str(repo), "image", "backup", str(disk_b), "--host", "other", env=ENV)
    e3("-r", str(repo), "backup", str(src), env=ENV)  # the newest snapshot is a files snapshot

    def restored(*args: str) -> bytes:
        out = tmp_path / f"out-{len(os.listdir(tmp_path))}.img"
        e3("-r", str(repo), "image", "restore", "latest", "--target", str(out), *args, env=ENV)
        return out.read_bytes()

    assert restored() == b
    assert restored("--host", os.uname().nodename) == a
    assert restored("--tag", "daily") == a
    assert restored("--path", str(disk_a)) == a
    assert restored("--tag", "nope", "--tag", "daily") == a  # any of the --tag sets
    exported = tmp_path / "export.img"
    e3("-r", str(repo), "image", "export", "latest", str(exported), "--format", "raw", "--path", str(disk_a), env=ENV)
    assert exported.read_bytes() == a

    p = e3("-r", str(repo), "image", "restore", "latest", "--target", str(tmp_path / "x.img"),
           "--host", "nowhere", env=ENV, check=False)
    assert p.returncode == 1 and p.stderr.strip() == "e3backup: error: no image snapshot with host nowhere found"

    # --parent latest: the newest image of this host and source, not the files snapshot
    p = e3("-r", str(repo), "image", "backup", str(disk_a), "--parent", "latest", env=ENV)
    assert "incremental" in p.stdout + p.stderr
