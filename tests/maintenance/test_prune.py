"""Prune planning and execution on small hand-built repositories; restic checks the results."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from e3backup.errors import RepoError
from e3backup.repo import BlobType, Node, PackWriter, Repository, Snapshot
from e3backup.repo.check import Checker
from e3backup.repo.index import IndexFile, IndexPack
from e3backup.repo.prune import Action, execute, parse_max_unused, parse_size, plan_prune
from e3backup.repo.tree import encode_tree
from e3backup.store import LocalStore
from e3backup.store.base import FileType, Handle

from ..helpers import PASSWORD, restic

PACK = 64 * 1024
CHUNK = 20_000


def chunks(n: int) -> list[bytes]:
    return [os.urandom(CHUNK) for _ in range(n)]


def snapshot(repo: Repository, files: dict[bytes, list[bytes]], t: int = 10**18) -> Snapshot:
    """One snapshot of flat files, each a list of chunks (one writer session: its own packs)."""
    with repo.lock(), repo.writer(pack_size=PACK) as w:
        nodes = []
        for name, parts in sorted(files.items()):
            ids = [w.save(BlobType.DATA, c)[0] for c in parts]
            nodes.append(
                Node(name=name, type="file", mode=0o644, size=sum(map(len, parts)), content=ids, mtime=t)
            )
        root = repo.save_tree(w, nodes)
    s = Snapshot(time=t, tree=root, paths=["/data"], hostname="test")
    repo.save_snapshot(s)
    return s


def reopen(path: Path) -> Repository:
    r = Repository.open(LocalStore(path), PASSWORD.encode())
    r.load_index()
    return r


def contents(path: Path) -> dict[str, dict[bytes, str]]:
    """Every snapshot's files as sha256 of their bytes, read through a freshly loaded index."""
    r = reopen(path)
    out = {}
    for s in r.snapshots():
        files = {}
        for p, n in r.walk(s.tree):
            data = b"".join(r.load_blob(BlobType.DATA, c) for c in n.content or [])
            files[p] = hashlib.sha256(data).hexdigest()
        out[s.id] = files
    return out


def forget(repo: Repository, s: Snapshot) -> None:
    repo.store.remove(Handle(FileType.SNAPSHOT, s.id))


def prune(path: Path, max_unused: str = "0%", max_repack: int | None = None) -> None:
    r = reopen(path)
    with r.lock(exclusive=True):
        execute(r, plan_prune(r, max_unused, max_repack))


def assert_clean(path: Path, read_data: bool = True) -> None:
    fresh = Repository.open(LocalStore(path), PASSWORD.encode())
    res = Checker(fresh).run("100%" if read_data else None)
    assert res.ok, res.errors
    assert not res.problems, res.problems  # not even a hint: every pack is indexed exactly once


def test_limits_parse() -> None:
    assert parse_size("2G") == 2 << 30 and parse_size("500m") == 500 << 20 and parse_size("1024") == 1024
    assert parse_max_unused("unlimited")(10) > 1 << 60
    assert parse_max_unused("0%")(1000) == 0
    assert parse_max_unused("20%")(800) == 200  # 200 of 1000 stored after pruning
    assert parse_max_unused("1M")(5) == 1 << 20


@pytest.mark.restic
def test_prune_deletes_and_repacks_and_keeps_every_kept_byte(repo: Repository, repo_path: Path) -> None:
    shared = chunks(4)
    gone = snapshot(repo, {b"only-old": chunks(6), b"shared": shared})
    snapshot(repo, {b"shared": shared[:2], b"new": chunks(3)}, t=10**18 + 1)
    forget(repo, gone)
    before = contents(repo_path)
    r = reopen(repo_path)
    plan = plan_prune(r, "0%")
    actions = {p.action for p in plan.packs.values()}
    assert Action.DELETE in actions and Action.REPACK in actions
    assert plan.stats.unused_after == 0
    with r.lock(exclusive=True):
        result = execute(r, plan)
    assert result.packs_deleted == plan.stats.delete_packs + plan.stats.repack_packs
    assert result.bytes_freed > 6 * CHUNK
    assert contents(repo_path) == before
    assert_clean(repo_path)
    restic(repo_path, "check", "--read-data")
    # a second prune finds nothing to do
    r = reopen(repo_path)
    again = plan_prune(r, "0%")
    assert again.nothing_to_do and again.stats.unused_bytes == 0


def test_max_unused_and_max_repack_limit_repacking(repo: Repository, repo_path: Path) -> None:
    old = snapshot(repo, {b"f": chunks(8)})
    kept = repo.load_tree(old.tree)[0].content or []
    snapshot(repo, {b"g": [repo.load_blob(BlobType.DATA, c) for c in kept[:3]]}, t=10**18 + 1)
    forget(repo, old)
    r = reopen(repo_path)
    assert not plan_prune(r, "unlimited").by_action(Action.REPACK)
    assert plan_prune(r, "0%").by_action(Action.REPACK)
    assert not plan_prune(r, "0%", max_repack=1).by_action(Action.REPACK)
    lenient = plan_prune(r, "99%")
    assert not lenient.by_action(Action.REPACK) and lenient.stats.unused_after > 0
    prune(repo_path, "unlimited")
    assert_clean(repo_path)


def test_duplicates_unindexed_and_mixed_packs(repo: Repository, repo_path: Path) -> None:
    dup = chunks(1)
    snapshot(repo, {b"a": dup + chunks(2)})
    # the same blob again, written by a session that did not know the index: a duplicate copy
    blind = Repository(repo.store, repo.key, repo.config)
    snapshot(blind, {b"b": dup}, t=10**18 + 1)
    # a pack no index names, holding nothing used (an interrupted upload)
    pw = PackWriter(repo.key, BlobType.DATA)
    pw.add_sealed(b"\1" * 32, repo.key.seal(b"orphan"), 0)
    orphan_id, data, _ = pw.finish()
    repo.store.save(Handle(FileType.PACK, orphan_id), data)
    # a pack mixing a used tree and a used data blob (PackWriter is switched type half way)
    mixed_data = b"mixed data blob"
    pw = PackWriter(repo.key, BlobType.DATA)
    data_id = hashlib.sha256(mixed_data).digest()
    pw.add_sealed(data_id, repo.key.seal(mixed_data), 0)
    tree_bytes = encode_tree(
        [Node(name=b"m", type="file", mode=0o644, size=len(mixed_data), content=[data_id], mtime=5)]
    )
    tree_id = hashlib.sha256(tree_bytes).digest()
    pw.blob_type = BlobType.TREE
    pw.add_sealed(tree_id, repo.key.seal(tree_bytes), 0)
    mixed_id, data, blobs = pw.finish()
    repo.store.save(Handle(FileType.PACK, mixed_id), data)
    repo.save_unpacked(FileType.INDEX, IndexFile([IndexPack(mixed_id, blobs)]).to_json())
    repo.save_snapshot(Snapshot(time=10**18 + 2, tree=tree_id, paths=["/m"], hostname="test"))
    before = contents(repo_path)

    r = reopen(repo_path)
    plan = plan_prune(r, "unlimited")
    assert plan.stats.duplicate_blobs == 1
    assert plan.packs[orphan_id].action is Action.DELETE and not plan.packs[orphan_id].indexed
    assert plan.packs[mixed_id].action is Action.REPACK and plan.packs[mixed_id].mixed
    holders = [p for p in plan.packs.values() if any(b.id == hashlib.sha256(dup[0]).digest() for b in p.used)]
    assert len(holders) == 1
    with r.lock(exclusive=True):
        execute(r, plan)
    assert contents(repo_path) == before
    assert_clean(repo_path)
    restic(repo_path, "check", "--read-data")


def test_unindexed_pack_holding_used_blobs_is_indexed_again(repo: Repository, repo_path: Path) -> None:
    snapshot(repo, {b"a": chunks(3)})
    before = contents(repo_path)
    for name in repo.list_ids(FileType.INDEX):  # the index file is lost; the packs are not
        repo.store.remove(Handle(FileType.INDEX, name))
    r = reopen(repo_path)
    plan = plan_prune(r, "0%")
    assert plan.stats.unindexed_packs >= 2
    assert all(p.action is Action.KEEP for p in plan.packs.values())
    assert not plan.nothing_to_do  # the index is rewritten even though no pack goes
    with r.lock(exclusive=True):
        execute(r, plan)
    assert contents(repo_path) == before
    assert_clean(repo_path)


def test_refuses_when_a_used_blob_is_missing(repo: Repository, repo_path: Path) -> None:
    s = snapshot(repo, {b"a": chunks(2)})
    r = reopen(repo_path)
    content = r.load_tree(s.tree)[0].content or []
    loc = r.index.lookup(BlobType.DATA, content[0])
    assert loc is not None
    repo.store.remove(Handle(FileType.PACK, loc.pack_id))
    with pytest.raises(RepoError, match=r"missing|no stored pack"):
        plan_prune(reopen(repo_path), "0%")


@pytest.mark.restic
def test_restic_prune_on_our_repository_then_our_check(repo: Repository, repo_path: Path) -> None:
    shared = chunks(3)
    old = snapshot(repo, {b"x": chunks(4), b"s": shared})
    snapshot(repo, {b"s": shared, b"y": chunks(2)}, t=10**18 + 1)
    restic(repo_path, "forget", old.id)
    before = contents(repo_path)
    restic(repo_path, "prune", "--max-unused", "0")
    assert contents(repo_path) == before
    fresh = Repository.open(LocalStore(repo_path), PASSWORD.encode())
    res = Checker(fresh).run("100%")
    assert res.ok, res.errors
