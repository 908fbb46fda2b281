"""Pick the snapshot provider for a source: ``auto`` uses LVM for logical volumes when the lvm2
tools are installed (sysfs ``dm/`` or the ``/dev/VG/LV`` form, confirmed by ``lvs``), else none;
a Windows volume (``C:``, ``\\?\\Volume{GUID}\\``) gets a VSS shadow copy (``auto`` or ``vss``), a
Windows physical disk is read directly (VSS shadows volumes, not disks), as the seeds do."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from e3backup.events import Event
from e3backup.platform.windows.cim import PowerShell
from e3backup.platform.windows.vss import is_volume_name, is_windows_source
from e3backup.platform.windows.vssapi import BackupComponents
from e3backup.platform.windows.win32 import Win32
from e3backup.sources.snapshot.appvss import VssSettings
from e3backup.sources.snapshot.base import CommandRunner, SnapshotProvider, SubprocessRunner
from e3backup.sources.snapshot.lvm import LvmSnapshotProvider
from e3backup.sources.snapshot.none import NoSnapshotProvider

LVM_TOOLS = ("lvs", "vgs", "lvcreate", "lvremove")


def is_device_mapper(source: str, sysfs: Path = Path("/sys")) -> bool:
    """Whether ``source`` resolves to a device-mapper node (``/sys/class/block/dm-N/dm``)."""
    name = os.path.basename(os.path.realpath(source))
    return (sysfs / "class" / "block" / name / "dm").is_dir()


def select_provider(
    source: str,
    mode: str = "auto",
    run_id: str = "run",
    runner: CommandRunner | None = None,
    on_event: Callable[[Event], None] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    sysfs: Path = Path("/sys"),
    vss: VssSettings | None = None,
    cancel: threading.Event | None = None,
) -> SnapshotProvider:
    """``mode`` is ``auto``, ``lvm`` or ``none``; ``lvm`` fails later if the source is no LV.
    ``vss``: the policy's VSS flags for a Windows volume (crash-consistent without them)."""
    if mode == "none":
        return NoSnapshotProvider(on_event, "snapshots disabled for this job")
    if mode not in ("auto", "lvm", "vss"):
        raise ValueError(f"unknown snapshot mode {mode!r} (auto, lvm, vss, none)")
    if is_windows_source(source):
        if mode == "lvm":
            raise ValueError(f"{source} is a Windows volume: LVM snapshots are for Linux logical volumes")
        if not is_volume_name(source):
            return NoSnapshotProvider(on_event, f"{source} is a physical disk: VSS shadows volumes, not disks")
        return vss_provider(on_event, vss, cancel)
    if mode == "vss":
        raise ValueError(f"{source} is not a Windows volume: VSS snapshots need C: or \\\\?\\Volume{{GUID}}\\")
    missing = [t for t in LVM_TOOLS if which(t) is None]
    if mode == "lvm":
        return LvmSnapshotProvider(runner or SubprocessRunner(), run_id, on_event)
    if missing:
        return NoSnapshotProvider(on_event, f"lvm2 tools not installed ({', '.join(missing)})")
    lvm = LvmSnapshotProvider(runner or SubprocessRunner(), run_id, on_event, fallback_to_live=True)
    looks_lv = is_device_mapper(source, sysfs) or (source.count("/") == 3 and source.startswith("/dev/"))
    if looks_lv and lvm.logical_volume(source) is not None:
        return lvm
    return NoSnapshotProvider(on_event, f"{source} is not an LVM logical volume")


def vss_provider(
    on_event: Callable[[Event], None] | None = None, settings: VssSettings | None = None,
    cancel: threading.Event | None = None,
) -> SnapshotProvider:
    """The real VSS provider: WMI through powershell.exe (crash-consistent), with the VSS writers
    through ``IVssBackupComponents`` when the policy asks for application consistency; NTFS hints
    through kernel32."""
    from e3backup.platform.windows.vss import ShadowCopies, default_journal
    from e3backup.sources.snapshot.appvss import AppConsistentVss, AppVssSnapshotProvider
    from e3backup.sources.snapshot.vss import VssSnapshotProvider

    shell, api, create = windows_seams()
    crash = VssSnapshotProvider(ShadowCopies(shell, default_journal()), api, on_event)
    if settings is None or settings.consistency != "application":
        return crash
    app = AppConsistentVss(create, settings, on_event, cancel=cancel)
    return AppVssSnapshotProvider(app, crash, api, on_event)


def windows_seams() -> tuple[PowerShell, Win32, Callable[[], BackupComponents]]:
    """powershell.exe, kernel32 and vssapi.dll (Windows only; tests replace this)."""
    from e3backup.platform.windows.cim import PowerShellRunner
    from e3backup.platform.windows.vsscom import backup_components
    from e3backup.platform.windows.win32 import kernel32

    return PowerShellRunner(), kernel32(), backup_components


__all__ = ["LVM_TOOLS", "is_device_mapper", "select_provider", "vss_provider", "windows_seams"]
