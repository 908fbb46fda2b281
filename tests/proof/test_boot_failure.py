"""A disk whose boot code is there but whose bootable partition is gone: the firmware runs the
MBR, which stops with its message; the boot proof fails saying so, with that screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
from e3backup.proof import ProofOptions, run_proof
from e3backup.proof.boot import boot_unavailable, text_mode
from e3backup.repo import Repository
from tests.plugins.bootdisk import PART_START_MIB, BootDisk

pytestmark = pytest.mark.slow


def test_a_boot_that_stops_in_the_boot_loader_fails_with_its_screen(repo: Repository, boot_disk: BootDisk,
                                                                    tmp_path: Path) -> None:
    if boot_unavailable():
        pytest.skip(boot_unavailable())
    disk = boot_disk.copy_to(tmp_path / "broken.img")
    with open(disk, "r+b") as f:  # the partition's boot record and file system: gone
        f.seek(PART_START_MIB << 20)
        f.write(b"\0" * (1 << 20))
    snap = run_image_backup(repo, ImageBackupOptions(source=str(disk), snapshot="none")).snapshot_id
    result = run_proof(repo, ProofOptions(snap, str(tmp_path / "s"), marker=boot_disk.marker, boot_timeout=20,
                                          screen_stable=3, memory_mb=256))
    assert result.kind == "boot" and result.verdict == "failed"
    assert result.reason.startswith("boot: no sign of life within 20 s (BIOS, "), result.reason
    assert f"no {boot_disk.marker!r} on the serial console and the screen stayed in text mode from" in result.reason
    assert result.screenshot is not None and text_mode(result.screenshot)
    (tmp_path / "screen.png").write_bytes(result.screenshot)
