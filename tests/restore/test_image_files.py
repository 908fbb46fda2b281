"""Picked files of a disk image snapshot's ext4 and NTFS partitions restored into a folder
(``restore.image_files``): bytes equal, the base folder's semantics, conflicts, and nothing
written outside the target even where links wait in it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.errors import E3Error, UsageError
from e3backup.repo import Repository
from e3backup.restore.image_files import ImageFilesOptions, run_image_files_restore
from e3backup.store import LocalStore
from tests.conftest import FAST_KDF
from tests.web.test_browse_image import EXT4, NTFS, _disk

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("sgdisk", "mkfs.ext4", "mkntfs", "ntfscp")),
                                reason="needs gdisk, e2fsprogs and ntfs-3g (scripts/setup.sh)")


@pytest.fixture(scope="module")
def image_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Repository, str]]:
    tmp = tmp_path_factory.mktemp("image-files")
    disk = tmp / "disk.img"
    _disk(disk)
    repo = Repository.init(LocalStore(tmp / "repo"), b"pw", FAST_KDF)
    snap = run_image_backup(repo, ImageBackupOptions(source=str(disk), snapshot="none")).snapshot_id
    disk.unlink()
    yield repo, snap
    repo.close()


def _restore(repo: Repository, snapshot: str, target: Path, paths: list[str], **kw: object):  # type: ignore[no-untyped-def]
    return run_image_files_restore(repo, ImageFilesOptions(target=str(target), paths=paths, snapshot=snapshot,
                                                           **kw))  # type: ignore[arg-type]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_ext4_and_ntfs_files_restored_byte_for_byte(image_repo: tuple[Repository, str], tmp_path: Path) -> None:
    repo, snap = image_repo
    result = _restore(repo, snap, tmp_path / "t", ["/1-root/dir", "/1-root/notes.txt", "/2-data/big.bin",
                                                   "/2-data/report.txt"])
    assert result.failed_files == [] and result.errors == []
    expected = {"1-root/notes.txt": EXT4["notes.txt"], "1-root/dir/sub/c.bin": EXT4["dir/sub/c.bin"],
                "1-root/dir/empty": b"", "2-data/big.bin": NTFS["big.bin"], "2-data/report.txt": NTFS["report.txt"]}
    assert _tree(tmp_path / "t") == expected
    assert result.files == 5 and result.verified_files == 5
    assert result.bytes_written == sum(len(v) for v in expected.values())
    assert not [p for p in (tmp_path / "t").rglob(".*.e3restore")]  # no temporary names left


def test_a_base_folder_drops_the_parents(image_repo: tuple[Repository, str], tmp_path: Path) -> None:
    repo, snap = image_repo
    _restore(repo, f"{snap}:1-root/dir", tmp_path / "t", ["/1-root/dir/sub"])
    assert _tree(tmp_path / "t") == {"sub/c.bin": EXT4["dir/sub/c.bin"]}
    with pytest.raises(UsageError, match=r"/2-data/report.txt is not inside /1-root/dir"):
        _restore(repo, f"{snap}:1-root/dir", tmp_path / "u", ["/2-data/report.txt"])


def test_conflicts_keep_both_skip_and_overwrite(image_repo: tuple[Repository, str], tmp_path: Path) -> None:
    repo, snap = image_repo
    base, target = f"{snap}:2-data", tmp_path / "t"
    target.mkdir()
    (target / "report.txt").write_text("edited on the target\n")
    r = _restore(repo, base, target, ["/2-data/report.txt"], conflict="keep_both")
    assert r.renamed == [str(target / "report (restored).txt")]
    assert (target / "report (restored).txt").read_bytes() == NTFS["report.txt"]
    r = _restore(repo, base, target, ["/2-data/report.txt"], conflict="skip")
    assert r.skipped == 1 and (target / "report.txt").read_text() == "edited on the target\n"
    _restore(repo, base, target, ["/2-data/report.txt"], conflict="overwrite")
    assert (target / "report.txt").read_bytes() == NTFS["report.txt"]


def test_links_waiting_in_the_target_are_replaced_never_followed(
    image_repo: tuple[Repository, str], tmp_path: Path
) -> None:
    repo, snap = image_repo
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "notes.txt").write_text("must stay\n")
    target = tmp_path / "t"
    (target / "1-root").mkdir(parents=True)
    os.symlink(outside, target / "1-root" / "dir")  # a folder of the restore is a link out
    os.symlink(outside / "notes.txt", target / "1-root" / "notes.txt")  # a file of the restore is a link out
    r = _restore(repo, snap, target, ["/1-root/dir", "/1-root/notes.txt"])
    assert r.errors == []
    assert sorted(p.name for p in outside.iterdir()) == ["notes.txt"]
    assert (outside / "notes.txt").read_text() == "must stay\n"
    assert not (target / "1-root" / "dir").is_symlink() and not (target / "1-root" / "notes.txt").is_symlink()
    assert _tree(target)["1-root/notes.txt"] == EXT4["notes.txt"]
    assert _tree(target)["1-root/dir/sub/c.bin"] == EXT4["dir/sub/c.bin"]


@pytest.mark.parametrize("path", ["/1-root/../../etc", "/1-root/dir/../../x", "/3-none/x", "/1-root/absent"])
def test_hostile_or_absent_paths_are_refused(image_repo: tuple[Repository, str], tmp_path: Path, path: str) -> None:
    repo, snap = image_repo
    with pytest.raises(E3Error, match=r"invalid name|is not in this image|no partition 3-none"):
        _restore(repo, snap, tmp_path / "t", [path])
    assert not (tmp_path / "etc").exists() and not (tmp_path / "x").exists()


def test_a_file_whose_data_cannot_be_read_is_named_and_not_left(
    image_repo: tuple[Repository, str], tmp_path: Path
) -> None:
    """One image chunk corrupted in a copy of the repository: the file it holds is removed and
    named, the other picked file is restored."""
    from e3backup.repo.blob import BlobType
    from e3backup.sources.stored_image import load_image_snapshot

    repo, snap = image_repo
    root = getattr(repo.store, "root")  # noqa: B009 - a LocalStore
    shutil.copytree(root, tmp_path / "repo")
    img = load_image_snapshot(repo, repo.load_snapshot(snap))
    needle = NTFS["big.bin"][300_000:300_064]
    blob = next(b for b in img.content if b not in img.zero_ids() and needle in repo.load_blob(BlobType.DATA, b))
    loc = repo.index.lookup(BlobType.DATA, blob)
    assert loc is not None
    pack = next((tmp_path / "repo" / "data").rglob(loc.pack_id))
    with open(pack, "r+b") as f:
        f.seek(loc.blob.offset + 20)
        byte = f.read(1)
        f.seek(loc.blob.offset + 20)
        f.write(bytes([byte[0] ^ 1]))
    damaged = Repository.open(LocalStore(tmp_path / "repo"), b"pw")
    try:
        r = _restore(damaged, f"{snap}:2-data", tmp_path / "t", ["/2-data/big.bin", "/2-data/report.txt"])
    finally:
        damaged.close()
    assert r.failed_files == [str(tmp_path / "t" / "big.bin")]
    assert "big.bin: not restored: data blob" in r.errors[0] and loc.pack_id in r.errors[0]
    assert _tree(tmp_path / "t") == {"report.txt": NTFS["report.txt"]}  # no partial big.bin, no temporary name
