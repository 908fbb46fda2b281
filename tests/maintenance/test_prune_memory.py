"""What keeps prune's memory small: packs repacked through temporary files. It must leave the
same repository."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from e3backup.repo import BlobType, Repository
from e3backup.repo.cache import Cache
from e3backup.repo.compression import compress
from e3backup.repo.pack import parse_header
from e3backup.repo.pack_file import PackFileWriter
from e3backup.repo.prune import Action, execute, plan_prune
from e3backup.repo.tree import encode_tree
from e3backup.store.base import FileType

from ..helpers import restic
from .test_prune import CHUNK, assert_clean, chunks, contents, forget, reopen, snapshot


def test_pack_file_writer_matches_the_pack_format(repo: Repository) -> None:
    parts = [os.urandom(50_000 + i) for i in range(20)]
    w = PackFileWriter(repo.key, BlobType.DATA)
    for p in parts:
        sealed = repo.key.seal(compress(p))
        w.add_sealed(hashlib.sha256(p).digest(), memoryview(sealed), len(p))
    random.seed(3)
    pack_id, f, blobs = w.finish()
    with f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == pack_id and len(data) == size
    assert parse_header(repo.key, data, size, pack_id) == blobs
    order = [b.id for b in blobs]
    assert sorted(order) == sorted(hashlib.sha256(p).digest() for p in parts)
    assert order != [hashlib.sha256(p).digest() for p in parts], "blobs are written in random order"
    for b in blobs:
        assert hashlib.sha256(repo.decode_blob(pack_id, b, data[b.offset : b.offset + b.length])).digest() == b.id


def test_spilling_writer_stores_caches_and_indexes_like_the_memory_one(repo: Repository, tmp_path: Path) -> None:
    repo.cache = Cache(tmp_path / "cache", repo.config.id)
    tree = encode_tree([])
    with repo.lock(), repo.writer(pack_size=3 * CHUNK, spill=True) as w:
        ids = [w.save(BlobType.DATA, c)[0] for c in chunks(7)]
        tree_id, _ = w.save(BlobType.TREE, tree)
    assert w.stats.packs == 4 and len(w.stored) == 4
    tree_packs = [p.id for p in w.stored if p.blobs[0].type is BlobType.TREE]
    assert len(tree_packs) == 1 and repo.cache.has(FileType.PACK, tree_packs[0])
    r = reopen(Path(repo.store.location))
    assert r.load_blob(BlobType.TREE, tree_id) == tree
    assert all(hashlib.sha256(r.load_blob(BlobType.DATA, i)).digest() == i for i in ids)


@pytest.mark.restic
def test_repack_through_temporary_files_into_several_packs(
    repo: Repository, repo_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill))
    monkeypatch.setattr("tempfile.tempdir", None)  # re-read TMPDIR
    keep, drop = chunks(12), chunks(12)
    gone = snapshot(repo, {b"a": [c for pair in zip(keep, drop, strict=True) for c in pair]})
    snapshot(repo, {b"k": keep}, t=10**18 + 1)
    forget(repo, gone)
    before = contents(repo_path)
    r = reopen(repo_path)
    r.pack_size = 4 * CHUNK  # the twelve kept chunks need three new packs
    plan = plan_prune(r, "0%")
    assert plan.by_action(Action.REPACK)
    with r.lock(exclusive=True):
        result = execute(r, plan)
    assert result.packs_written >= 3
    assert list(spill.iterdir()) == []
    assert contents(repo_path) == before
    assert_clean(repo_path)
    restic(repo_path, "check", "--read-data")
