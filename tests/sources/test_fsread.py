"""The file-system readers of ``sources.fsread`` on file systems made by the real tools: every
file's bytes equal what was put in, folders list what they hold (ext2/3 block maps, ext4 extents
and hashed folders, NTFS resident and non-resident data, index allocation blocks)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from e3backup.sources.device import open_device
from e3backup.sources.fsread import Ext4Reader, FsReadError, NtfsReader, lookup, open_fs

from .diskimages import make_ext, make_ntfs, random_bytes, sample_files


def _files() -> dict[str, bytes]:
    files = sample_files(5)
    files["big/" + "x" * 200] = b"long name\n"
    files["huge.bin"] = random_bytes(600_000, 6)  # into ext2/3's double-indirect blocks (1 KiB blocks)
    for i in range(300):
        files[f"big/f{i:04d}.txt"] = b"%d\n" % i
    return files


@pytest.mark.parametrize("mkfs", ["mkfs.ext4", "mkfs.ext3", "mkfs.ext2"])
def test_ext_files_read_back_equal(mkfs: str, tmp_path: Path) -> None:
    if not shutil.which(mkfs):
        pytest.skip(f"{mkfs} missing")
    files = _files()
    path = tmp_path / "fs.img"
    make_ext(path, 16 << 20, files, mkfs=mkfs, options=("-b", "1024"))
    with open_device(str(path)) as src:
        fs = open_fs(src)
        assert isinstance(fs, Ext4Reader)
        assert sorted(e.name for e in fs.list(fs.root())) == ["a.bin", "big", "dir", "empty", "huge.bin",
                                                                "lost+found", "small.txt"]
        big = lookup(fs, ["big"])
        assert big is not None and len(fs.list(big.ref)) == 301
        for name, data in files.items():
            e = lookup(fs, name.split("/"))
            assert e is not None and e.size == len(data) and b"".join(fs.read(e.ref)) == data, name
        with pytest.raises(FsReadError, match="not in this file system"):
            lookup(fs, ["nope"])


def test_ntfs_files_read_back_equal(tmp_path: Path) -> None:
    if not shutil.which("mkntfs"):
        pytest.skip("ntfs-3g missing")
    files = {k: v for k, v in sample_files(8).items() if "/" not in k}
    files.update({f"f{i:04d}.txt": b"%d\n" % i for i in range(40)})  # beyond $INDEX_ROOT: INDX blocks
    files["Überlänge " + "y" * 150 + ".txt"] = b"unicode\n"
    path = tmp_path / "ntfs.img"
    make_ntfs(path, 16 << 20, files)
    with open_device(str(path)) as src:
        fs = open_fs(src, "ntfs")
        assert isinstance(fs, NtfsReader)
        assert sorted(e.name for e in fs.list(fs.root())) == sorted(files)  # no $MFT & co.
        for name, data in files.items():
            e = lookup(fs, [name])
            assert e is not None and e.size == len(data) and b"".join(fs.read(e.ref)) == data, name
        with pytest.raises(FsReadError, match="not a folder"):
            fs.list(lookup(fs, ["small.txt"]).ref)  # type: ignore[union-attr]


def test_no_known_file_system_is_said(tmp_path: Path) -> None:
    path = tmp_path / "junk.img"
    path.write_bytes(random_bytes(1 << 20, 9))
    with open_device(str(path)) as src, pytest.raises(FsReadError, match="no ext2/3/4 or NTFS"):
        open_fs(src)
