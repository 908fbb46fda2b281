"""The parent snapshot: what an incremental backup reuses, and what it must read again."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from e3backup.engines.files import BackupOptions, BackupResult, run_backup
from e3backup.repo import Repository
from e3backup.repo.blob import BlobType
from e3backup.repo.node import Node
from e3backup.repo.snapshot import Snapshot
from e3backup.store import FileType, Handle

from ..helpers import PASSWORD, restic
from .trees import describe


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # backups of "src": the directories above tmp_path change under concurrent test runs
    monkeypatch.chdir(tmp_path)


def _tree(root: Path) -> Path:
    src = root / "src"
    (src / "sub").mkdir(parents=True)
    for i in range(40):  # more than one reader batch
        (src / f"f{i:02d}.txt").write_text(f"file {i}\n" * (i + 1))
    (src / "sub" / "x.txt").write_text("x" * 5000)
    (src / "sub" / "y.txt").write_text("y" * 7000)
    os.setxattr(src / "sub" / "x.txt", "user.note", b"kept")
    os.symlink("x.txt", src / "sub" / "link")
    return src


def _backup(repo: Repository, src: Path, **kw: object) -> BackupResult:
    assert src.parent == Path.cwd()
    return run_backup(repo, BackupOptions(paths=[src.name], **kw))  # type: ignore[arg-type]


def _snap(repo: Repository, snap_id: str) -> Snapshot:
    return repo.load_snapshot(snap_id)


def _dir_tree(repo: Repository, snap_id: str, path: Path) -> tuple[bytes, list[Node]]:
    """(tree ID, nodes) of directory ``path`` (below the current directory) in a snapshot."""
    tree_id = _snap(repo, snap_id).tree
    for part in path.relative_to(Path.cwd()).parts:
        node = next(n for n in repo.load_tree(tree_id) if n.name == os.fsencode(part))
        assert node.subtree is not None
        tree_id = node.subtree
    return tree_id, repo.load_tree(tree_id)


def _by_name(nodes: list[Node]) -> dict[str, Node]:
    return {n.display_name: n for n in nodes}


def _content(repo: Repository, node: Node) -> bytes:
    assert node.content is not None
    return b"".join(repo.load_blob(BlobType.DATA, c) for c in node.content)


def test_unchanged_backup_reuses_every_tree(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    first = _backup(repo, src)
    second = _backup(repo, src)
    assert second.parent_id == first.snapshot_id
    assert second.files_unmodified == 42 and second.files_new == second.files_changed == 0
    assert second.bytes_read == 0 and second.tree_blobs == 0 and second.dirs_changed == 0
    assert _snap(repo, second.snapshot_id).tree == _snap(repo, first.snapshot_id).tree


def test_ctime_change_refreshes_metadata(repo: Repository, repo_path: Path, tmp_path: Path) -> None:
    """chmod and setxattr keep mtime but move ctime: the file's node is built afresh."""
    src = _tree(tmp_path)
    first = _backup(repo, src)
    before = os.lstat(src / "f01.txt").st_mtime_ns
    os.chmod(src / "f01.txt", 0o600)
    os.setxattr(src / "sub" / "y.txt", "user.new", b"v")
    assert os.lstat(src / "f01.txt").st_mtime_ns == before
    second = _backup(repo, src)
    assert second.files_changed == 2 and second.files_unmodified == 40
    assert second.bytes_read == os.path.getsize(src / "f01.txt") + 7000
    nodes = _by_name(_dir_tree(repo, second.snapshot_id, src)[1])
    assert nodes["f01.txt"].mode & 0o777 == 0o600
    sub_old = _by_name(_dir_tree(repo, first.snapshot_id, src / "sub")[1])
    sub_new = _by_name(_dir_tree(repo, second.snapshot_id, src / "sub")[1])
    assert sub_new["y.txt"].xattrs == [("user.new", b"v")]
    # the unchanged siblings in the changed directory are the parent's nodes, unaltered
    assert sub_new["x.txt"] == sub_old["x.txt"] and sub_new["x.txt"].xattrs == [("user.note", b"kept")]
    assert sub_new["link"] == sub_old["link"]
    restic(repo_path, "check", "--read-data")


def test_new_content_with_old_size_and_mtime_is_read(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _backup(repo, src)
    p = src / "sub" / "x.txt"
    st = os.lstat(p)
    p.write_text("z" * 5000)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = _backup(repo, src)
    assert second.files_changed == 1 and second.bytes_read == 5000
    assert _content(repo, _by_name(_dir_tree(repo, second.snapshot_id, src / "sub")[1])["x.txt"]) == b"z" * 5000


def _restic_backup(repo_path: Path, src: Path, tz: str) -> str:
    p = subprocess.run(
        ["restic", "-r", str(repo_path), "--no-cache", "backup", "--json", src.name],
        cwd=src.parent,
        env={**os.environ, "RESTIC_PASSWORD": PASSWORD, "TZ": tz},
        check=True,
        capture_output=True,
        text=True,
    )
    return str(json.loads(p.stdout.splitlines()[-1])["snapshot_id"])  # a short ID in restic 0.14


def test_restic_parent_with_a_zone_offset_is_recognised(repo: Repository, repo_path: Path, tmp_path: Path) -> None:
    """restic writes local times (``+01:00``); they are the same instants, so nothing is read."""
    if not Path("/usr/share/zoneinfo/Europe/Berlin").exists():
        pytest.skip("no tzdata")
    src = _tree(tmp_path)
    parent = repo.find_snapshot(_restic_backup(repo_path, src, "Europe/Berlin")).id
    repo.load_index()
    tree_id, _ = _dir_tree(repo, parent, src)
    raw = json.loads(repo.load_blob(BlobType.TREE, tree_id))
    assert all(n["mtime"].endswith(("+01:00", "+02:00")) for n in raw["nodes"])  # the case under test
    ours = _backup(repo, src, parent=parent)
    assert ours.files_unmodified == 42 and ours.bytes_read == 0 and ours.files_changed == 0
    # a file changed behind the same size and mtime is still read
    p = src / "f05.txt"
    st = os.lstat(p)
    p.write_text(p.read_text().upper())
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = _backup(repo, src, parent=parent)
    assert again.files_changed == 1 and again.bytes_read == st.st_size
    restic(repo_path, "check", "--read-data")
    restic(repo_path, "restore", again.snapshot_id, "--target", str(tmp_path / "out"))
    assert describe(tmp_path / "out" / "src") == describe(src)


def test_parent_entry_that_does_not_decode_is_read_again(repo: Repository, repo_path: Path, tmp_path: Path) -> None:
    """A parent entry kept raw but invalid (no writer we know makes one) costs a read, not the backup."""
    src = _tree(tmp_path)
    first = _backup(repo, src)
    # rewrite the parent: src/f03.txt gets a mode that is not a number, so src and the root new IDs
    snap = _snap(repo, first.snapshot_id)
    src_tree, _ = _dir_tree(repo, first.snapshot_id, src)

    def rewrite(tree_id: bytes, name: str, key: str, value: object) -> bytes:
        doc = json.loads(repo.load_blob(BlobType.TREE, tree_id))
        next(n for n in doc["nodes"] if n["name"] == name)[key] = value
        return w.save(BlobType.TREE, json.dumps(doc).encode() + b"\n")[0]

    with repo.writer() as w:
        new_src = rewrite(src_tree, "f03.txt", "mode", "bogus")
        snap.tree = rewrite(snap.tree, "src", "subtree", new_src.hex())
    snap.id = ""
    parent = repo.save_snapshot(snap)
    os.chmod(src / "f07.txt", 0o640)  # the directory changes, so its tree is encoded again
    second = _backup(repo, src, parent=parent)
    assert second.errors == []
    nodes = _by_name(_dir_tree(repo, second.snapshot_id, src)[1])
    assert _content(repo, nodes["f03.txt"]) == (src / "f03.txt").read_bytes()
    assert nodes["f03.txt"].mode == _by_name(_dir_tree(repo, first.snapshot_id, src)[1])["f03.txt"].mode
    assert nodes["f07.txt"].mode & 0o777 == 0o640
    repo.store.remove(Handle(FileType.SNAPSHOT, parent))  # restic rightly refuses the crafted tree
    restic(repo_path, "check", "--read-data")


def test_with_atime_keeps_content_but_refreshes_the_node(repo: Repository, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    _backup(repo, src, with_atime=True)
    p = src / "f09.txt"
    st = os.lstat(p)
    os.utime(p, ns=(st.st_atime_ns - 10**9, st.st_mtime_ns))  # atime only (ctime moves too)
    os.utime(src / "f10.txt", ns=(1_000_000_000, os.lstat(src / "f10.txt").st_mtime_ns))
    second = _backup(repo, src, with_atime=True)
    assert second.bytes_read == os.path.getsize(p) + os.path.getsize(src / "f10.txt")
    nodes = _by_name(_dir_tree(repo, second.snapshot_id, src)[1])
    assert nodes["f10.txt"].atime == 1_000_000_000
    third = _backup(repo, src, with_atime=True)
    assert third.bytes_read == 0 and third.files_unmodified == 42
    assert _by_name(_dir_tree(repo, third.snapshot_id, src)[1])["f10.txt"].atime == 1_000_000_000
