"""The boot proof on the real bootable test disk (kernel + busybox initramfs, extlinux on MBR):
backed up, proven by booting the snapshot, the screenshot showing the marker; the same disk with
its boot sector zeroed fails with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.proof import ProofOptions, run_proof
from e3backup.proof.boot import boot_unavailable
from e3backup.repo import Repository
from tests.plugins.bootdisk import BootDisk, boot_disk  # noqa: F401

from .png import text_bands

pytestmark = pytest.mark.slow


@pytest.fixture
def bootable_snapshot(repo: Repository, boot_disk: BootDisk, tmp_path: Path) -> str:  # noqa: F811
    if boot_unavailable():
        pytest.skip(boot_unavailable())
    disk = boot_disk.copy_to(tmp_path / "boot.img")
    return run_image_backup(repo, ImageBackupOptions(source=str(disk), snapshot="none")).snapshot_id


def test_a_bootable_snapshot_boots_and_its_screen_shows_the_marker(repo: Repository, bootable_snapshot: str,
                                                                  boot_disk: BootDisk, tmp_path: Path) -> None:  # noqa: F811
    result = run_proof(repo, ProofOptions(bootable_snapshot, str(tmp_path / "s"), marker=boot_disk.marker,
                                          boot_timeout=120, memory_mb=256))
    assert result.kind == "boot" and result.verdict == "passed", result.checks
    boot = next(c for c in result.checks if c.name == "boot")
    assert boot.detail.startswith(f"the serial console showed {boot_disk.marker!r} after"), boot.detail
    assert result.screenshot is not None and result.screenshot.startswith(b"\x89PNG")
    (tmp_path / "screen.png").write_bytes(result.screenshot)
    # the init clears the screen and prints the marker (16 characters) and, two lines below,
    # "booted from an e3backup snapshot" (32): exactly two lines of text, the first half as wide
    first, second = text_bands(result.screenshot)
    assert second[0] > first[1]
    ratio = (first[3] - first[2] + 1) / (second[3] - second[2] + 1)
    assert 0.45 < ratio < 0.55, (first, second)
