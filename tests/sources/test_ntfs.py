"""NTFS used-cluster maps against ntfs-3g's own view (ntfscat $Bitmap, ntfsinfo), on real volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.sources.device import BytesSource, open_device
from e3backup.sources.errors import LayoutError
from e3backup.sources.layout import ntfs
from e3backup.sources.layout.probe import probe_filesystem

from .diskimages import MiB, make_ntfs, ntfs_bitmap, ntfs_file_clusters, ntfsinfo_counts, sample_files

FILES = {k: v for k, v in sample_files(5).items() if "/" not in k}


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    img = tmp_path_factory.mktemp("ntfs") / "vol.img"
    make_ntfs(img, 64 * MiB, FILES)
    return img


@pytest.mark.parametrize("cluster", [512, 4096, 65536])
def test_used_clusters_match_ntfs3g(tmp_path: Path, cluster: int) -> None:
    img = tmp_path / "vol.img"
    make_ntfs(img, 48 * MiB, FILES, cluster=cluster)
    with open_device(img) as dev:
        assert probe_filesystem(dev) == "ntfs"
        boot, bitmap = ntfs.read_bitmap(dev)
        _, used = ntfs.used_clusters(dev)
        extents = ntfs.used_extents(dev)
    assert boot.cluster_size == cluster
    assert bitmap == ntfs_bitmap(img)
    total, free = ntfsinfo_counts(img)
    assert boot.cluster_count == total
    assert used.total_bytes == total - free
    for name, data in FILES.items():
        if len(data) > 1024:  # small files are resident in the MFT record
            clusters = ntfs_file_clusters(img, name)
            assert clusters.total_bytes * cluster >= len(data)
            assert not clusters - used
    # the backup boot sector (last sector) is in the plan, though outside every cluster
    assert extents.covers(48 * MiB - 512, 512)
    assert extents.total_bytes < 48 * MiB // 2


def test_backup_boot_sector_used_when_primary_is_damaged(tmp_path: Path, volume: Path) -> None:
    data = bytearray(volume.read_bytes())
    with open_device(volume) as dev:
        expected = ntfs.used_extents(dev)
    data[0:512] = bytes(512)
    with pytest.raises(LayoutError):
        ntfs.parse_boot_sector(bytes(data[:512]))
    src = BytesSource(bytes(data))
    boot = ntfs.read_boot_sector(src)
    assert boot.from_backup
    assert ntfs.used_extents(src) == expected


def test_torn_mft_record_is_rejected(volume: Path) -> None:
    with open_device(volume) as dev:
        boot = ntfs.read_boot_sector(dev)
        raw = bytearray(dev.read_at(boot.mft_lcn * boot.cluster_size, boot.mft_record_size))
    assert ntfs.apply_fixups(bytearray(raw))[:4] == b"FILE"
    raw[510] ^= 0xFF  # the end of the first stride no longer carries the update sequence number
    with pytest.raises(LayoutError, match="torn"):
        ntfs.apply_fixups(raw)


def test_run_list_decoding() -> None:
    # 0x21: 1-byte length, 2-byte offset; second run goes backwards; 0x01: sparse run; 0x00 ends
    runs = ntfs.decode_runs(bytes([0x21, 0x10, 0x00, 0x01, 0x21, 0x08, 0x00, 0xFF, 0x01, 0x04, 0x00]))
    assert [(r.vcn, r.lcn, r.length) for r in runs] == [
        (0, 0x100, 0x10),
        (0x10, 0x100 - 0x100, 8),
        (0x18, None, 4),
    ]
    with pytest.raises(LayoutError):
        ntfs.decode_runs(bytes([0x33, 0x01]))
