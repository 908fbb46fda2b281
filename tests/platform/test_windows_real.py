"""``pytest -m windows``: the Windows layer against the real APIs, on a Windows machine, as an
administrator (docs/windows.md says how). Skipped everywhere else; none of these has run yet."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.windows,
    pytest.mark.skipif(sys.platform != "win32", reason="needs a real Windows machine (pytest -m windows there)"),
]

VOLUME = os.environ.get("E3BACKUP_TEST_VOLUME", "C:")


def test_physical_drive_0_reads_an_mbr_signature() -> None:
    from e3backup.platform.windows.rawdisk import drive_layout, open_raw
    from e3backup.platform.windows.win32 import kernel32

    api = kernel32()
    with open_raw(api, "\\\\.\\PhysicalDrive0") as dev:
        assert dev.size > 0 and dev.sector_size in (512, 4096)
        assert dev.read_at(510, 2) == b"\x55\xaa"  # MBR or protective MBR
        layout = drive_layout(api, dev.handle, dev.path)
        assert layout.style in ("gpt", "mbr") and layout.partitions


def test_shadow_copy_lifecycle_and_bitmap_cross_check(tmp_path: Path) -> None:
    from e3backup.events import Event, EventCode
    from e3backup.platform.windows.cim import PowerShellRunner
    from e3backup.platform.windows.vss import Journal, ShadowCopies
    from e3backup.platform.windows.win32 import kernel32
    from e3backup.sources.device import open_device
    from e3backup.sources.layout.read import read_layout
    from e3backup.sources.plan import PlanMode, build_read_plan
    from e3backup.sources.snapshot.vss import VssSnapshotProvider
    from e3backup.sources.volume_hints import apply_volume_hints

    shadows = ShadowCopies(PowerShellRunner(), Journal(tmp_path / "journal.json"))
    events: list[Event] = []
    api = kernel32()
    with VssSnapshotProvider(shadows, api, events.append).snapshot(VOLUME) as snap:
        assert snap.used_extents
        with open_device(snap.device_path, api=api) as dev:
            assert dev.read_at(3, 8) == b"NTFS    "
            plan = build_read_plan(dev, read_layout(dev), PlanMode.USED, on_event=events.append)
            apply_volume_hints(plan, snap, events.append)
    assert EventCode.DISK_IMAGE_BITMAP_MISMATCH not in [e.code for e in events]
    assert shadows.journal.ids() == []
    assert snap.name not in {s.id for s in shadows.all()}


def test_inventory_lists_the_system_volume() -> None:
    from e3backup.agent.disks import WindowsInventory

    report = WindowsInventory().report()
    assert any(v.path.upper() == os.environ.get("SYSTEMDRIVE", "C:").upper()
               for d in report.disks for v in d.volumes)


def test_files_backup_of_a_long_path_lists_as_restic_does(tmp_path: Path) -> None:
    import json
    import subprocess

    from e3backup.engines.files import BackupOptions, run_backup
    from e3backup.repo import Repository
    from e3backup.store import LocalStore

    base = Path(tempfile.mkdtemp(dir=os.environ.get("SYSTEMDRIVE", "C:") + "\\"))
    deep = Path("\\\\?\\" + str(base)) / ("d" * 100) / ("e" * 100) / ("f" * 100)
    deep.mkdir(parents=True)
    (deep / "x.txt").write_bytes(b"long path")
    repo_path = tmp_path / "repo"
    Repository.init(LocalStore(repo_path), b"pw").close()
    repo = Repository.open(LocalStore(repo_path), b"pw")
    try:
        assert run_backup(repo, BackupOptions(paths=[str(base)])).errors == []
    finally:
        repo.close()
    restic = os.environ.get("RESTIC", "restic")
    out = subprocess.run([restic, "-r", str(repo_path), "ls", "--json", "latest"], capture_output=True,
                         env={**os.environ, "RESTIC_PASSWORD": "pw"}, check=True).stdout.decode()
    drive = str(base)[0]
    paths = [json.loads(line).get("path") for line in out.splitlines()]
    assert any(p and p.startswith(f"/{drive}/") and p.endswith("/x.txt") for p in paths)


@pytest.mark.skipif(not os.environ.get("E3BACKUP_TEST_SHARE"), reason="set E3BACKUP_TEST_SHARE, _USER, _PASSWORD")
def test_share_connects_for_the_run_only() -> None:
    from e3backup.platform.windows.shares import connected
    from e3backup.platform.windows.win32 import kernel32

    share = os.environ["E3BACKUP_TEST_SHARE"]
    with connected(kernel32(), [share], os.environ.get("E3BACKUP_TEST_SHARE_USER"),
                   os.environ.get("E3BACKUP_TEST_SHARE_PASSWORD")):
        assert os.listdir(share) is not None
