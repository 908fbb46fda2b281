"""What keeps prune's memory small: packs repacked through temporary files, blobs checked in
pieces, and the key derived before numpy is imported. Each must leave the same repository."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from e3backup.errors import IntegrityError, RepoError
from e3backup.repo import BlobType, Node, PackWriter, Repository, Snapshot
from e3backup.repo.cache import Cache
from e3backup.repo.compression import compress
from e3backup.repo.index import IndexFile, IndexPack
from e3backup.repo.pack import parse_header
from e3backup.repo.pack_file import PackFileWriter
from e3backup.repo.prune import Action, execute, plan_prune
from e3backup.repo.tree import encode_tree
from e3backup.store import LocalStore
from e3backup.store.base import FileType, Handle

from ..conftest import FAST_KDF
from ..helpers import PASSWORD, restic
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


def test_no_usable_temporary_directory_stops_prune_before_any_change(
    repo: Repository, repo_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep, drop = chunks(3), chunks(3)
    gone = snapshot(repo, {b"a": [c for pair in zip(keep, drop, strict=True) for c in pair]})
    snapshot(repo, {b"k": keep}, t=10**18 + 1)
    forget(repo, gone)
    files = {t: sorted(repo.list_ids(t)) for t in (FileType.PACK, FileType.INDEX)}
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    r = reopen(repo_path)
    with r.lock(exclusive=True), pytest.raises(RepoError, match=r"temporary pack file in .*missing.*TMPDIR"):
        execute(r, plan_prune(r, "0%"))
    assert {t: sorted(repo.list_ids(t)) for t in files} == files


def _bad_blob_repository(repo: Repository, sealed_plain: bytes, claimed: bytes, ulen: int) -> Path:
    """A snapshot whose one file names a blob stored (sealed and compressed) as ``sealed_plain``,
    beside an unused blob in the same pack, so that prune repacks it."""
    blob_id = hashlib.sha256(claimed).digest()
    pw = PackWriter(repo.key, BlobType.DATA)
    pw.add_sealed(blob_id, repo.key.seal(compress(sealed_plain)), ulen)
    pw.add_sealed(b"\2" * 32, repo.key.seal(os.urandom(5000)), 0)
    tree = encode_tree([Node(name=b"f", type="file", mode=0o644, size=len(claimed), content=[blob_id], mtime=5)])
    tree_id = hashlib.sha256(tree).digest()
    pack_id, data, blobs = pw.finish()
    repo.store.save(Handle(FileType.PACK, pack_id), data)
    tw = PackWriter(repo.key, BlobType.TREE)
    tw.add_sealed(tree_id, repo.key.seal(tree), 0)
    tree_pack, tdata, tblobs = tw.finish()
    repo.store.save(Handle(FileType.PACK, tree_pack), tdata)
    doc = IndexFile([IndexPack(pack_id, blobs), IndexPack(tree_pack, tblobs)]).to_json()
    repo.save_unpacked(FileType.INDEX, doc)
    repo.save_snapshot(Snapshot(time=10**18, tree=tree_id, paths=["/f"], hostname="test"))
    return Path(repo.store.location)


@pytest.mark.parametrize(
    ("stored", "claimed", "ulen", "error"),
    [
        (b"altered content" * 1000, b"claimed content" * 1000, 15_000, "hash mismatch"),
        (b"short" * 100, b"short" * 100, 501, "length mismatch"),
    ],
)
def test_repack_refuses_a_blob_that_does_not_match_its_id(
    repo: Repository, stored: bytes, claimed: bytes, ulen: int, error: str
) -> None:
    path = _bad_blob_repository(repo, stored, claimed, ulen)
    packs_before = sorted(repo.list_ids(FileType.PACK))
    r = reopen(path)
    plan = plan_prune(r, "0%")
    assert plan.by_action(Action.REPACK)
    with r.lock(exclusive=True), pytest.raises(IntegrityError, match=error):
        execute(r, plan)
    assert sorted(repo.list_ids(FileType.PACK)) == packs_before  # nothing was copied or deleted


def test_verify_blob_checks_what_decode_blob_checks(repo: Repository) -> None:
    plain = b"some text " * 5000
    pw = PackWriter(repo.key, BlobType.DATA)
    pw.add_sealed(hashlib.sha256(plain).digest(), repo.key.seal(compress(plain)), len(plain))
    pw.add_sealed(hashlib.sha256(b"raw").digest(), repo.key.seal(b"raw"), 0)
    pack_id, data, blobs = pw.finish()
    for b in blobs:
        sealed = data[b.offset : b.offset + b.length]
        repo.verify_blob(pack_id, b, memoryview(sealed))
        corrupt = bytearray(sealed)
        corrupt[20] ^= 1
        for check in (repo.verify_blob, repo.decode_blob):
            with pytest.raises(IntegrityError, match=f"blob {b.id.hex()} in pack {pack_id}: ciphertext"):
                check(pack_id, b, bytes(corrupt))


def test_key_is_derived_before_numpy_is_imported(repo_path: Path) -> None:
    """scrypt's 32 MiB and numpy's ~20 MiB must not be resident at the same time (docs/prune.md)."""
    code = """
import sys
import e3backup.cli.maintenance_cmds, e3backup.cli.repo_cmds
from e3backup.repo import keys, Repository
from e3backup.store import LocalStore
assert "numpy" not in sys.modules, "a CLI module imports numpy before the key is derived"
derive = keys.derive_user_key
def spy(*a, **k):
    assert "numpy" not in sys.modules, "numpy is imported before the key is derived"
    return derive(*a, **k)
keys.derive_user_key = spy
r = Repository.open(LocalStore(sys.argv[1]), sys.argv[2].encode())
assert "numpy" in sys.modules and len(r.index) == 0
"""
    Repository.init(LocalStore(repo_path), PASSWORD.encode(), FAST_KDF).close()
    subprocess.run([sys.executable, "-c", code, str(repo_path), PASSWORD], check=True)
