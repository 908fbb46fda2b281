"""ext2/3/4 used-block maps against dumpe2fs, on real file systems built with mkfs -d."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.sources.device import open_device
from e3backup.sources.errors import LayoutError
from e3backup.sources.extents import ExtentList
from e3backup.sources.layout import ext4
from e3backup.sources.layout.probe import probe_filesystem

from .diskimages import MiB, debugfs_blocks, dumpe2fs_used_blocks, make_ext, sample_files

VARIANTS = {
    "ext4-default-1k": ("mkfs.ext4", ()),
    "ext4-4k-flexbg-uninit": ("mkfs.ext4", ("-b", "4096", "-g", "1024")),
    "ext4-32bit-desc": ("mkfs.ext4", ("-O", "^64bit", "-b", "4096", "-g", "2048")),
    "ext4-no-flexbg": ("mkfs.ext4", ("-O", "^flex_bg", "-g", "2048")),
    "ext4-meta-bg": ("mkfs.ext4", ("-O", "meta_bg,^resize_inode", "-b", "1024", "-g", "1024")),
    "ext4-sparse-super2": ("mkfs.ext4", ("-O", "sparse_super2", "-b", "4096", "-g", "1024")),
    "ext4-no-sparse-super": ("mkfs.ext4", ("-O", "^sparse_super,^resize_inode", "-b", "4096", "-g", "1024")),
    "ext4-bigalloc": ("mkfs.ext4", ("-O", "bigalloc", "-b", "4096", "-C", "16384")),
    "ext3": ("mkfs.ext3", ("-g", "2048")),
    "ext2": ("mkfs.ext2", ("-b", "4096", "-g", "1024")),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_used_blocks_match_dumpe2fs(tmp_path: Path, variant: str) -> None:
    mkfs, options = VARIANTS[variant]
    img = tmp_path / "fs.img"
    files = sample_files(3)
    make_ext(img, 48 * MiB, files, mkfs=mkfs, options=options)
    bs, expected = dumpe2fs_used_blocks(img)
    with open_device(img) as dev:
        assert probe_filesystem(dev) == variant.split("-")[0]
        sb, used = ext4.used_blocks(dev)
        extents = ext4.used_extents(dev)
    assert sb.block_size == bs
    assert used == expected, used ^ expected
    for name in files:
        if files[name]:
            assert debugfs_blocks(img, name).subtract(used) == ExtentList()
    assert extents.covers(0, 2048)
    assert extents.total_bytes < 48 * MiB // 2


def test_rejects_non_ext(tmp_path: Path) -> None:
    img = tmp_path / "zero.img"
    img.write_bytes(b"\0" * 8192)
    with open_device(img) as dev, pytest.raises(LayoutError):
        ext4.used_extents(dev)
