"""``boot_snapshot``: the bootable test disk, backed up, boots from the repository in QEMU (KVM
when it works here, else TCG); the marker shows on the serial console and on the screen, and the
guest's writes never reach the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from e3backup.instant import boot_snapshot
from e3backup.repo import Repository
from tests.engines.disk_image.conftest import backup
from tests.helpers import restic
from tests.plugins.bootdisk import BootDisk
from tests.png import read_png

from .conftest import pack_hashes


@pytest.mark.slow
def test_a_backed_up_boot_disk_boots_and_shows_its_marker(
    boot_disk: BootDisk, repo: Repository, repo_path: Path, tmp_path: Path
) -> None:
    snap = backup(repo_path, boot_disk.copy_to(tmp_path / "boot.img")).result.snapshot_id
    before = pack_hashes(repo_path)
    png = tmp_path / "screen.png"
    with boot_snapshot(repo, snap[:8], memory_mb=256) as vm:
        assert vm.firmware == "bios"
        assert vm.accel in ("kvm", "tcg")
        assert vm.wait_for_serial(boot_disk.marker, timeout=240), vm.serial_text[-2000:]
        assert vm.wait_for_screen_stable(timeout=60, stable_for=1.0, interval=0.5)
        assert vm.screendump(png) == png
        overlay = vm.overlay
        assert overlay.exists()
        assert vm.disk_errors == []
    assert not overlay.exists()  # discarded at stop by default
    width, height, _, rows = read_png(png.read_bytes())
    assert (width, height) == (720, 400)  # VGA text mode
    lit = sum(1 for row in rows for v in row if v > 128)
    assert lit > 500, "the screen is blank"
    assert pack_hashes(repo_path) == before
    restic(repo_path, "check", "--read-data")
