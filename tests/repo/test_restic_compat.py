"""The real restic binary judges our repositories, and we read restic's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from e3backup.repo import BlobType, Node, Repository, Snapshot
from e3backup.store import LocalStore

from ..helpers import PASSWORD, restic, run_cli

pytestmark = pytest.mark.restic


def test_our_init_passes_restic_check(tmp_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    assert run_cli(capsys, "-r", str(repo), "init").code == 0
    out = restic(repo, "cat", "config").stdout
    cfg = json.loads(out)
    assert cfg["version"] == 2 and len(cfg["id"]) == 64
    restic(repo, "check", "--read-data")


def test_restic_reads_our_blobs(repo: Repository, repo_path: Path, tmp_path: Path) -> None:
    """Compressed and uncompressed data blobs, compressed and uncompressed trees, several packs."""
    big = os.urandom(3 * 1024 * 1024) + b"z" * (2 * 1024 * 1024)
    with repo.lock(), repo.writer(pack_size=1024 * 1024) as w:
        c1, _ = w.save(BlobType.DATA, big[: 2 * 1024 * 1024])
        c2, _ = w.save(BlobType.DATA, big[2 * 1024 * 1024 :], compressed=False)
        small, _ = w.save(BlobType.DATA, b"hello world\n")
        files = [
            Node(name=b"big.bin", type="file", mode=0o644, size=len(big), content=[c1, c2], mtime=10**18),
            Node(name=b"small.txt", type="file", mode=0o600, size=12, content=[small], mtime=10**18),
            Node(name=b"empty", type="file", mode=0o644, content=[], mtime=10**18),
        ]
        sub_tree, _ = w.save(BlobType.TREE, _tree_bytes(files), compressed=False)
        root = repo.save_tree(
            w, [Node(name=b"dir", type="dir", mode=0o40755 | (1 << 31), subtree=sub_tree, mtime=10**18)]
        )
    repo.save_snapshot(Snapshot(time=10**18, tree=root, paths=["/dir"], hostname="test"))
    restic(repo_path, "check", "--read-data")
    assert restic(repo_path, "dump", "latest", "/dir/big.bin").stdout == big
    assert restic(repo_path, "dump", "latest", "/dir/small.txt").stdout == b"hello world\n"
    target = tmp_path / "out"
    restic(repo_path, "restore", "latest", "--target", str(target))
    assert (target / "dir" / "big.bin").read_bytes() == big
    assert (target / "dir" / "empty").read_bytes() == b""
    assert (target / "dir" / "small.txt").stat().st_mode & 0o777 == 0o600


def test_incompressible_data_is_stored_as_it_is_and_restic_reads_it(
    repo: Repository, repo_path: Path, tmp_path: Path
) -> None:
    """Random data would only grow under zstd: it is stored uncompressed (type 0); text is
    compressed; a tree stays compressed whatever it holds. restic checks and restores all of it."""
    noise, text = os.urandom(1 << 20), b"all is well\n" * 50_000
    with repo.lock(), repo.writer() as w:
        noise_id, _ = w.save(BlobType.DATA, noise)
        text_id, _ = w.save(BlobType.DATA, text)
        nodes = [
            Node(name=b"noise", type="file", mode=0o644, size=len(noise), content=[noise_id], mtime=10**18),
            Node(name=b"text", type="file", mode=0o644, size=len(text), content=[text_id], mtime=10**18),
        ]
        tree_id, _ = w.save(BlobType.TREE, _tree_bytes(nodes))
    repo.save_snapshot(Snapshot(time=10**18, tree=tree_id, paths=["/data"], hostname="h"))
    stored = {b.id: b for blobs in repo.index.packs().values() for b in blobs}
    assert stored[noise_id].uncompressed_length == 0 and stored[noise_id].length == len(noise) + 32
    assert stored[text_id].uncompressed_length == len(text) and stored[text_id].length < len(text) // 10
    assert stored[tree_id].uncompressed_length > 0
    restic(repo_path, "check", "--read-data")
    out = tmp_path / "out"
    restic(repo_path, "restore", "latest", "--target", str(out))
    assert (out / "noise").read_bytes() == noise and (out / "text").read_bytes() == text


def _tree_bytes(nodes: list[Node]) -> bytes:
    from e3backup.repo.tree import encode_tree

    return encode_tree(nodes)


def test_we_read_restic_repository(tmp_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "restic-repo"
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(2_000_000))
    (src / 'we"ird\\name').write_text("x")
    restic(repo, "init")
    restic(repo, "backup", "--tag", "t1", str(src))
    restic(repo, "backup", "--stdin", "--stdin-filename", "streamed.bin", input=b"stream" * 10000)
    r = run_cli(capsys, "-r", str(repo), "snapshots", "--json")
    assert r.code == 0, r.err
    snaps = json.loads(r.out)
    assert len(snaps) == 2
    assert {tuple(s["paths"]) for s in snaps} == {(str(src),), ("/streamed.bin",)}
    assert all(len(s["id"]) == 64 and s["short_id"] == s["id"][:8] for s in snaps)
    assert any(s["tags"] == ["t1"] for s in snaps)
    r = run_cli(capsys, "-r", str(repo), "check", "--read-data")
    assert r.code == 0, r.out + r.err
    # and we can read every file's bytes back
    opened = Repository.open(LocalStore(repo), PASSWORD.encode())
    opened.load_index()
    snap = next(s for s in opened.snapshots() if s.tags == ["t1"])
    files = {p: n for p, n in opened.walk(snap.tree) if n.type == "file"}
    b_node = next(n for p, n in files.items() if p.endswith(b"/sub/b.bin"))
    data = b"".join(opened.load_blob(BlobType.DATA, c) for c in b_node.content or [])
    assert data == (src / "sub" / "b.bin").read_bytes()
    assert any(p.endswith(b'/we"ird\\name') for p in files)


def test_cat_commands(repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    with repo.lock(), repo.writer() as w:
        root = repo.save_tree(w, [])
    sid = repo.save_snapshot(Snapshot(time=10**18, tree=root, paths=["/x"], hostname="h", tags=["a"]))
    r = run_cli(capsys, "-r", str(repo_path), "cat", "config")
    assert json.loads(r.out)["id"] == repo.config.id
    r = run_cli(capsys, "-r", str(repo_path), "cat", "snapshot", sid[:8])
    assert json.loads(r.out)["tags"] == ["a"]
    index_id = repo.list_ids(__import__("e3backup.store", fromlist=["FileType"]).FileType.INDEX)[0]
    r = run_cli(capsys, "-r", str(repo_path), "cat", "index", index_id)
    pack_id = json.loads(r.out)["packs"][0]["id"]
    r = run_cli(capsys, "-r", str(repo_path), "cat", "pack-header", pack_id)
    hdr = json.loads(r.out)
    assert hdr["blobs"][0]["type"] == "tree" and hdr["blobs"][0]["id"] == root.hex()
