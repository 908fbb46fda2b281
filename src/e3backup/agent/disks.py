"""The machine's disks and volumes for the dashboard's disk-image wizard.

On Linux: ``lsblk --json -b -o NAME,PATH,SIZE,TYPE,FSTYPE,MOUNTPOINT,MODEL`` (util-linux), whose
tree gives disks, their partitions and what sits on them. On Windows: CIM through PowerShell
(``WindowsInventory``; not yet run on a real Windows machine, docs/windows.md). Elsewhere an
empty report.
``run_lsblk`` is the seam the tests replace with recorded output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any, Protocol

from ..api.agent import Disk, DiskReport, HyperVVmInfo, Volume
from ..errors import E3Error
from ..platform.windows.cim import PowerShell

LSBLK_ARGS = ["lsblk", "--json", "-b", "-o", "NAME,PATH,SIZE,TYPE,FSTYPE,MOUNTPOINT,MODEL"]
_DISK_TYPES = {"disk", "loop"}
_CONTAINERS = {"LVM2_member", "crypto_LUKS", "linux_raid_member"}  # what sits on them is listed instead


class DiskInventory(Protocol):
    def report(self) -> DiskReport: ...


def run_lsblk() -> str:
    exe = shutil.which("lsblk")
    if exe is None:
        raise E3Error("lsblk not found (util-linux)")
    p = subprocess.run([exe, *LSBLK_ARGS[1:]], capture_output=True, text=True, timeout=30, check=False)
    if p.returncode != 0:
        raise E3Error(f"lsblk failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def _volume(dev: dict[str, Any]) -> Volume:
    return Volume(
        path=dev.get("path") or f"/dev/{dev['name']}",
        filesystem=dev.get("fstype") or "",
        mount_point=dev.get("mountpoint") or "",
        size_bytes=int(dev.get("size") or 0),
    )


def _walk(devs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in devs:
        out.append(d)
        out.extend(_walk(d.get("children") or []))
    return out


def parse_lsblk(text: str) -> DiskReport:
    doc = json.loads(text)
    report = DiskReport()
    for dev in doc.get("blockdevices", []):
        if dev.get("type") not in _DISK_TYPES:
            report.volumes.extend(_volume(d) for d in _walk([dev]) if d.get("fstype"))
            continue
        if int(dev.get("size") or 0) == 0:
            continue  # an unused loop or zram device
        children = _walk(dev.get("children") or [])
        volumes = [_volume(c) for c in children
                   if (c.get("fstype") and c.get("fstype") not in _CONTAINERS) or c.get("mountpoint")]
        if dev.get("fstype"):
            volumes.insert(0, _volume(dev))  # a file system on the whole disk
        style = "raw"
        if any(c.get("type") == "part" for c in children):
            style = ""  # partitioned; lsblk's columns do not say GPT or MBR
        report.disks.append(Disk(
            path=dev.get("path") or f"/dev/{dev['name']}",
            model=(dev.get("model") or "").strip(),
            size_bytes=int(dev.get("size") or 0),
            partition_style=style,
            volumes=volumes,
        ))
    return report


class LsblkInventory:
    def __init__(self, runner: Callable[[], str] = run_lsblk) -> None:
        self.runner = runner

    def report(self) -> DiskReport:
        return parse_lsblk(self.runner())


class EmptyInventory:
    """Platforms without an inventory in this build (Windows): an empty, valid report."""

    def report(self) -> DiskReport:
        return DiskReport()


VmLister = Callable[[], tuple[list[HyperVVmInfo] | None, str | None]]


class WithRestoreTargets:
    """Adds where this agent may restore to every report, so the dashboard offers the agent's
    own restore folders and devices instead of letting users guess them."""

    def __init__(self, inner: DiskInventory, restore_roots: list[str], allowed_devices: list[str],
                 vms: VmLister | None = None) -> None:
        self.inner = inner
        self.restore_roots = restore_roots
        self.allowed_devices = allowed_devices
        self.vms = vms  # the Hyper-V host's VMs (agent.hyperv.discover), if this agent has one

    def report(self) -> DiskReport:
        r = self.inner.report()
        vms, error = self.vms() if self.vms is not None else (None, None)
        # built with every field given, so the client's ``exclude_unset`` keeps them all
        return DiskReport(disks=r.disks, volumes=r.volumes, restore_roots=list(self.restore_roots),
                          allowed_devices=list(self.allowed_devices), hyperv_vms=vms, hyperv_error=error)


class WindowsInventory:
    """Windows: CIM through PowerShell (``platform.windows.inventory``), in the Linux report's
    shape: disks as ``\\\\.\\PhysicalDriveN`` with their volumes (``C:``, or the volume GUID path)."""

    def __init__(self, shell: PowerShell | None = None) -> None:
        self.shell = shell

    def report(self) -> DiskReport:
        from ..platform.windows.cim import PowerShellRunner
        from ..platform.windows.inventory import WinVolume, read_inventory

        def volume(v: WinVolume) -> Volume:
            return Volume(path=v.path, label=v.label, filesystem=v.filesystem.lower(), mount_point=v.path,
                          size_bytes=v.size, free_bytes=v.free)

        inv = read_inventory(self.shell or PowerShellRunner())
        return DiskReport(
            disks=[Disk(path=d.path, model=d.model, size_bytes=d.size, partition_style=d.partition_style,
                        volumes=[volume(v) for v in d.volumes]) for d in inv.disks],
            volumes=[volume(v) for v in inv.volumes],
        )


def inventory_for(platform: str = sys.platform) -> DiskInventory:
    if platform.startswith("linux"):
        return LsblkInventory()
    return WindowsInventory() if platform == "win32" else EmptyInventory()


__all__ = [
    "LSBLK_ARGS",
    "DiskInventory",
    "EmptyInventory",
    "LsblkInventory",
    "WindowsInventory",
    "WithRestoreTargets",
    "inventory_for",
    "parse_lsblk",
]
