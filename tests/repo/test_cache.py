"""The local cache of index, snapshot and tree files: fewer requests, never trusted blindly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from e3backup.engines.files import BackupOptions, run_backup
from e3backup.repo import Repository
from e3backup.repo.cache import Cache
from e3backup.store import FileType, Handle, LocalStore

from ..conftest import FAST_KDF
from ..helpers import PASSWORD


class CountingStore(LocalStore):
    """A local store that counts reads per file type (a stand-in for S3 requests)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.loads: dict[FileType, int] = {}

    def load(self, h: Handle, offset: int = 0, length: int | None = None) -> bytes:
        self.loads[h.type] = self.loads.get(h.type, 0) + 1
        return super().load(h, offset, length)


def _open(root: Path, cache_dir: Path) -> tuple[Repository, CountingStore]:
    store = CountingStore(root)
    repo = Repository.open(store, PASSWORD.encode())
    repo.cache = Cache(cache_dir, repo.config.id)
    return repo, store


def _tree(src: Path) -> None:
    for d in range(20):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(5):
            (src / f"d{d}" / f"f{f}").write_bytes(os.urandom(100))


def test_second_backup_reads_trees_and_indexes_from_the_cache(tmp_path: Path) -> None:
    Repository.init(LocalStore(tmp_path / "repo"), PASSWORD.encode(), FAST_KDF)
    _tree(tmp_path / "src")
    repo, store = _open(tmp_path / "repo", tmp_path / "cache")
    run_backup(repo, BackupOptions(paths=[str(tmp_path / "src")]))
    repo, store = _open(tmp_path / "repo", tmp_path / "cache")
    result = run_backup(repo, BackupOptions(paths=[str(tmp_path / "src")]))
    assert result.files_unmodified == 100
    assert store.loads.get(FileType.PACK, 0) == 0  # every parent tree came from the cache
    assert store.loads.get(FileType.INDEX, 0) == 0
    assert store.loads.get(FileType.SNAPSHOT, 0) == 0


def test_damaged_cache_entries_are_fetched_again(tmp_path: Path) -> None:
    Repository.init(LocalStore(tmp_path / "repo"), PASSWORD.encode(), FAST_KDF)
    _tree(tmp_path / "src")
    repo, _ = _open(tmp_path / "repo", tmp_path / "cache")
    first = run_backup(repo, BackupOptions(paths=[str(tmp_path / "src")]))
    cache_root = tmp_path / "cache" / repo.config.id
    damaged: list[Any] = []
    for kind in ("index", "snapshots", "data"):
        for p in (cache_root / kind).iterdir():
            b = bytearray(p.read_bytes())
            b[len(b) // 2] ^= 0xFF
            p.write_bytes(bytes(b))
            damaged.append(p)
    assert damaged
    repo, store = _open(tmp_path / "repo", tmp_path / "cache")
    result = run_backup(repo, BackupOptions(paths=[str(tmp_path / "src")]))
    assert result.parent_id == first.snapshot_id and result.files_unmodified == 100
    assert store.loads.get(FileType.PACK, 0) > 0  # trees were read from the store instead


@pytest.mark.parametrize("forget", [True])
def test_cache_drops_files_the_repository_no_longer_has(tmp_path: Path, forget: bool) -> None:
    Repository.init(LocalStore(tmp_path / "repo"), PASSWORD.encode(), FAST_KDF)
    _tree(tmp_path / "src")
    repo, _ = _open(tmp_path / "repo", tmp_path / "cache")
    res = run_backup(repo, BackupOptions(paths=[str(tmp_path / "src")]))
    cache_snap = tmp_path / "cache" / repo.config.id / "snapshots" / res.snapshot_id
    assert cache_snap.exists()
    LocalStore(tmp_path / "repo").remove(Handle(FileType.SNAPSHOT, res.snapshot_id))
    repo, _ = _open(tmp_path / "repo", tmp_path / "cache")
    assert repo.snapshots() == [] and not cache_snap.exists()
