"""A small bootable BIOS disk built from Debian packages, for the tests that boot backups.

``boot_disk`` (session fixture) gives a ~24 MiB raw disk: an MBR (syslinux's ``mbr.bin``) with
one active ext2 partition holding extlinux, the Debian kernel (``linux-image-amd64``) and a
busybox initramfs (``busybox-static``) whose ``/init`` prints ``BootDisk.marker`` (then the
guest's ``MemTotal`` line) on the serial console and, alone on a cleared screen, on the VGA text
console, then waits. Built once per machine and cached in the temp directory by a key of its
inputs (kernel, busybox, this file), so a session pays ~2 s to build it the first time only.
Needs root (the partition is loop-mounted for ``extlinux --install``); the packages come from
``scripts/setup.sh``.

Tests take a copy (``copy_to``) to back up or break; the cached file is never changed.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

MARKER = "E3BACKUP-BOOT-OK"
DISK_MIB = 24
PART_START_MIB = 1
BUSYBOX = "/bin/busybox"
MBR_BIN = "/usr/lib/syslinux/mbr/mbr.bin"
SYSLINUX_EFI = "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi"
LDLINUX_E64 = "/usr/lib/syslinux/modules/efi64/ldlinux.e64"

INIT = f"""#!/bin/sh
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox mount -t proc proc /proc
echo "{MARKER}" > /dev/ttyS0
/bin/busybox grep MemTotal /proc/meminfo > /dev/ttyS0
printf '\\033[2J\\033[H\\n\\n\\n\\n\\n\\n\\n\\n\\n\\n                              {MARKER}\\n' > /dev/tty1
printf '\\n                        booted from an e3backup snapshot\\n' > /dev/tty1
while :; do /bin/busybox sleep 3600; done
"""

EXTLINUX_CONF = """DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.gz
  APPEND console=tty1 console=ttyS0,115200 quiet loglevel=0 vt.global_cursor_default=0 panic=-1 rdinit=/init
"""


@dataclass(frozen=True)
class BootDisk:
    path: Path
    marker: str

    def copy_to(self, dest: Path) -> Path:
        """A copy to back up or change (sparse where the cached file is)."""
        subprocess.run(["cp", "--sparse=always", str(self.path), str(dest)], check=True)
        return dest


def _kernel() -> str:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        pytest.fail("no kernel in /boot: install linux-image-amd64 (scripts/setup.sh)")
    return kernels[-1]


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    """One ``newc`` cpio entry (the initramfs format the kernel unpacks)."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def initramfs(busybox: bytes) -> bytes:
    """A gzip'ed cpio with busybox, ``/bin/sh``, ``/init`` and ``/dev/console``."""
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        ("bin", 0o40755, b"", (0, 0)),
        ("dev", 0o40755, b"", (0, 0)),
        ("proc", 0o40755, b"", (0, 0)),
        ("dev/console", 0o20600, b"", (5, 1)),
        ("dev/ttyS0", 0o20600, b"", (4, 64)),
        ("dev/tty1", 0o20600, b"", (4, 1)),
        ("bin/busybox", 0o100755, busybox, (0, 0)),
        ("bin/sh", 0o120777, b"busybox", (0, 0)),
        ("init", 0o100755, INIT.encode(), (0, 0)),
    ]
    body = b"".join(_cpio_entry(n, m, d, r, ino=i + 1) for i, (n, m, d, r) in enumerate(entries))
    return gzip.compress(body + _cpio_entry("TRAILER!!!", 0), mtime=0)


def build_boot_disk(dest: Path, firmware: str = "bios") -> None:
    """Write the bootable disk to ``dest`` (see the module docstring)."""
    if firmware == "uefi":
        build_uefi_boot_disk(dest)
        return
    work = Path(tempfile.mkdtemp(prefix="e3b-bootdisk-"))
    try:
        root = work / "root"
        (root / "boot" / "extlinux").mkdir(parents=True)
        shutil.copyfile(_kernel(), root / "boot" / "vmlinuz")
        (root / "boot" / "initrd.gz").write_bytes(initramfs(Path(BUSYBOX).read_bytes()))
        (root / "boot" / "extlinux" / "extlinux.conf").write_text(EXTLINUX_CONF)
        part = work / "part.img"
        part.touch()
        part_mib = DISK_MIB - PART_START_MIB
        # ext2: extlinux 6.04 failed to load the kernel from an ext4 made by mkfs -d (I/O error)
        subprocess.run(
            ["mkfs.ext2", "-q", "-F", "-L", "e3bboot", "-d", str(root), str(part), f"{part_mib}M"],
            check=True,
        )
        disk = work / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(DISK_MIB << 20)
        subprocess.run(
            ["sfdisk", "-q", str(disk)],
            input=f"start={PART_START_MIB * 2048}, type=83, bootable\n",
            text=True,
            check=True,
        )
        subprocess.run(
            ["dd", f"if={part}", f"of={disk}", "bs=1M", f"seek={PART_START_MIB}", "conv=notrunc,sparse", "status=none"],
            check=True,
        )
        mnt = work / "mnt"
        mnt.mkdir()
        subprocess.run(["mount", "-o", f"loop,offset={PART_START_MIB << 20}", str(disk), str(mnt)], check=True)
        try:
            subprocess.run(["extlinux", "--install", str(mnt / "boot" / "extlinux")], check=True, capture_output=True)
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
        subprocess.run(
            ["dd", f"if={MBR_BIN}", f"of={disk}", "bs=440", "count=1", "conv=notrunc", "status=none"], check=True
        )
        tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        subprocess.run(["cp", "--sparse=always", str(disk), str(tmp)], check=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_uefi_boot_disk(dest: Path) -> None:
    """The UEFI twin: a GPT disk whose EFI system partition (FAT, written with mtools: no mount,
    no root) holds syslinux's EFI loader as the removable-media path ``EFI/BOOT/BOOTX64.EFI``,
    its config, the kernel and the initramfs."""
    work = Path(tempfile.mkdtemp(prefix="e3b-bootdisk-"))
    try:
        part_mib = DISK_MIB - PART_START_MIB - 1  # the backup GPT needs the last sectors
        part = work / "esp.img"
        subprocess.run(["mkfs.fat", "-C", "-n", "E3BEFI", str(part), str(part_mib * 1024)], check=True,
                       capture_output=True)  # fmt: skip
        (work / "initrd.gz").write_bytes(initramfs(Path(BUSYBOX).read_bytes()))
        (work / "syslinux.cfg").write_text(EXTLINUX_CONF.replace("/boot/", "/"))
        mt = ["-i", str(part)]
        subprocess.run(["mmd", *mt, "::/EFI", "::/EFI/BOOT"], check=True)
        for src, name in (
            (SYSLINUX_EFI, "EFI/BOOT/BOOTX64.EFI"),
            (LDLINUX_E64, "EFI/BOOT/ldlinux.e64"),
            (str(work / "syslinux.cfg"), "EFI/BOOT/syslinux.cfg"),
            (_kernel(), "vmlinuz"),
            (str(work / "initrd.gz"), "initrd.gz"),
        ):
            subprocess.run(["mcopy", *mt, src, f"::/{name}"], check=True)
        disk = work / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(DISK_MIB << 20)
        subprocess.run(["sgdisk", "-n", f"1:{PART_START_MIB * 2048}:+{part_mib}M", "-t", "1:ef00",
                        "-c", "1:EFI system", str(disk)], check=True, capture_output=True)  # fmt: skip
        subprocess.run(
            ["dd", f"if={part}", f"of={disk}", "bs=1M", f"seek={PART_START_MIB}", "conv=notrunc,sparse", "status=none"],
            check=True,
        )
        tmp = dest.with_name(dest.name + f".{os.getpid()}.tmp")
        subprocess.run(["cp", "--sparse=always", str(disk), str(tmp)], check=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cache_key() -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for p in (_kernel(), BUSYBOX, MBR_BIN, SYSLINUX_EFI, LDLINUX_E64):
        st = os.stat(p)
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _cached(firmware: str, tools: tuple[str, ...]) -> BootDisk:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/setup.sh")
    dest = Path(tempfile.gettempdir()) / f"e3backup-test-bootdisk-{firmware}-{_cache_key()}.img"
    if not dest.exists():
        build_boot_disk(dest, firmware)
    return BootDisk(dest, MARKER)


@pytest.fixture(scope="session")
def boot_disk() -> BootDisk:
    """The cached bootable BIOS test disk (read-only: take a copy to change it)."""
    if os.geteuid() != 0:
        pytest.skip("building the boot disk loop-mounts its partition: needs root")
    return _cached("bios", ("extlinux", "sfdisk", "mkfs.ext2"))


@pytest.fixture(scope="session")
def uefi_boot_disk() -> BootDisk:
    """The cached bootable UEFI test disk (GPT, EFI system partition, syslinux.efi)."""
    return _cached("uefi", ("mkfs.fat", "mcopy", "sgdisk"))
