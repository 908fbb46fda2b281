"""Restore never writes outside its target, whatever a (hostile) tree says."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from e3backup.repo import BlobType, Node, Repository, Snapshot

from ..helpers import run_cli


def _raw_tree(nodes: list[dict[str, object]]) -> bytes:
    # hand-crafted JSON: encode_tree() itself refuses what a hostile writer would put here
    return ('{"nodes":[' + ",".join(json.dumps(n) for n in nodes) + "]}\n").encode()


def _node(name: str, **kw: object) -> dict[str, object]:
    base = Node(name=b"x", type="file", mode=0o644, size=4, mtime=1).to_json()
    base.update(name=name, **kw)
    return base


@pytest.mark.parametrize("bad_name", ["..", "../escape", "/etc/passwd", "a/../../b", "nul\\x00byte", ".", ""])
def test_hostile_names_are_refused(
    bad_name: str,
    repo: Repository,
    repo_path: Path,
    tmp_path: Path,
    password_env: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with repo.lock(), repo.writer() as w:
        data_id, _ = w.save(BlobType.DATA, b"evil")
        tree_id, _ = w.save(BlobType.TREE, _raw_tree([_node(bad_name, content=[data_id.hex()])]))
    repo.save_snapshot(Snapshot(time=10**18, tree=tree_id, paths=["/x"]))
    target = tmp_path / "deep" / "target"
    r = run_cli(capsys, "-r", str(repo_path), "restore", "latest", "--target", str(target))
    assert r.code == 1
    assert "refusing to restore invalid name" in r.err
    assert not (tmp_path / "deep" / "escape").exists() and not (tmp_path / "escape").exists()
    written = [p for p in (tmp_path / "deep").rglob("*") if p.is_file()]
    assert written == []


def test_existing_symlink_in_target_is_not_followed(
    repo: Repository, repo_path: Path, tmp_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with repo.lock(), repo.writer() as w:
        data_id, _ = w.save(BlobType.DATA, b"new content")
        inner = repo.save_tree(w, [Node(name=b"f", type="file", mode=0o644, size=11, content=[data_id], mtime=1)])
        root = repo.save_tree(w, [Node(name=b"d", type="dir", mode=0o755 | (1 << 31), subtree=inner, mtime=1)])
    repo.save_snapshot(Snapshot(time=10**18, tree=root, paths=["/d"]))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("precious")
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "d")
    r = run_cli(capsys, "-r", str(repo_path), "restore", "latest", "--target", str(target))
    assert r.code == 0, r.err
    assert (outside / "f").read_text() == "precious"
    assert (target / "d" / "f").read_text() == "new content" and not (target / "d").is_symlink()
