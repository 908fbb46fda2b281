"""What a restored disk image is (bootable, partitions) and the file system proof of it.

``boot_sector`` judges sector 0 (and the GPT) the way a firmware would: a BIOS boots an MBR
disk whose boot code is there and which ends in ``55 AA``; UEFI boots a GPT disk with an EFI
System Partition. ``check_partitions`` runs each partition's checker read-only
(``checkers.py``) and reads a random sample of its files with the project's own ext4/NTFS
readers (``sources.fsread``), so no file system is mounted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..contract import Cancel, check_cancel
from ..sources.device import ByteSource, Window
from ..sources.fsread import FsReadError, open_fs
from ..sources.fsread.model import FileSystemReader, FsEntry
from ..sources.layout import DiskLayout, Partition
from ..sources.layout.guids import gpt_type_name
from .checkers import CHECKERS, UNCHECKABLE, LoopError, check_filesystem, loop_device
from .options import ProofOptions
from .result import Check

BOOT_SIGNATURE = b"\x55\xaa"
MAX_LISTED = 5000  # directory entries looked at to pick a partition's sample


@dataclass(frozen=True)
class BootSector:
    firmware: str | None  # "bios", "uefi" or None: nothing a firmware would boot
    why: str  # in words, for the proof's checks


def boot_sector(source: ByteSource, layout: DiskLayout) -> BootSector:
    sector0 = source.read_at(0, 512)
    if layout.table == "gpt":
        esp = next((p for p in layout.partitions if _is_esp(p)), None)
        if esp is not None:
            return BootSector("uefi", f"GPT disk with an EFI System Partition (partition {esp.index})")
    has_signature = sector0[510:512] == BOOT_SIGNATURE
    has_code = any(sector0[:440])
    if has_signature and has_code:
        return BootSector("bios", "sector 0 holds boot code and the 55 AA boot signature")
    if not any(sector0):
        return BootSector(None, "sector 0 is all zeros: no boot code, no partition table, no 55 AA signature")
    if not has_signature:
        return BootSector(None, "sector 0 has no 55 AA boot signature")
    return BootSector(None, "sector 0 has a partition table but no boot code")


def _is_esp(p: Partition) -> bool:
    return p.type_name == "efi-system" or gpt_type_name(p.type) == "efi-system"


def check_partitions(image: str, source: ByteSource, layout: DiskLayout, options: ProofOptions,
                     cancel: Cancel) -> list[Check]:
    """One check per partition (its checker's verdict) and one per partition's file sample."""
    checks: list[Check] = []
    for p in layout.partitions:
        check_cancel(cancel, "proof cancelled while checking the partitions")
        name = "whole disk" if p.index == 0 else f"partition {p.index}"
        fs = p.filesystem
        if fs is None:
            checks.append(Check(f"{name}", True, f"no file system recognised ({p.type_name}): its bytes were "
                                                 "read back and verified, nothing more can be checked"))
            continue
        if fs in UNCHECKABLE:
            checks.append(Check(f"{name} ({fs})", True, UNCHECKABLE[fs]))
            continue
        if fs not in CHECKERS:
            checks.append(Check(f"{name} ({fs})", False, f"no checker for {fs} file systems"))
            continue
        try:
            with loop_device(image, p.start, p.size) as device:
                ok, said = check_filesystem(fs, device)
        except LoopError as e:
            ok, said = False, f"could not attach the partition read-only: {e}"
        checks.append(Check(f"{name} ({fs})", ok, said))
        if fs in ("ext2", "ext3", "ext4", "ntfs"):
            checks.append(read_sample(Window(source, p.start, p.size), fs, f"{name} files", options, cancel))
    return checks


def read_sample(source: ByteSource, fs_name: str, name: str, options: ProofOptions, cancel: Cancel) -> Check:
    """Read a random sample of the file system's files to the end (our own readers)."""
    try:
        fs = open_fs(source, fs_name)
        files = _files(fs, cancel)
    except FsReadError as e:
        return Check(name, False, f"the {fs_name} file system cannot be read: {e}")
    rng = random.Random(options.seed)
    rng.shuffle(files)
    read = total = 0
    for path, entry in files:
        if read >= options.sample_files:
            break
        if total + entry.size > options.sample_bytes:
            continue
        check_cancel(cancel, "proof cancelled while reading files")
        try:
            got = sum(len(piece) for piece in fs.read(entry.ref))
        except (FsReadError, OSError) as e:
            return Check(name, False, f"{path}: {e}")
        if got != entry.size:
            return Check(name, False, f"{path}: read {got} bytes of {entry.size}")
        read += 1
        total += got
    return Check(name, True, f"{read} of {len(files)} files read to the end ({total} bytes)")


def _files(fs: FileSystemReader, cancel: Cancel) -> list[tuple[str, FsEntry]]:
    """Regular files, breadth first, up to ``MAX_LISTED`` entries looked at."""
    out: list[tuple[str, FsEntry]] = []
    queue: list[tuple[str, int]] = [("", fs.root())]
    seen = 0
    while queue and seen < MAX_LISTED:
        check_cancel(cancel, "proof cancelled while listing files")
        path, ref = queue.pop(0)
        for entry in fs.list(ref):
            if entry.name in (".", "..") or entry.name.startswith("$"):
                continue
            seen += 1
            child = f"{path}/{entry.name}"
            if entry.type == "dir" and entry.name != "lost+found":
                queue.append((child, entry.ref))
            elif entry.type == "file":
                out.append((child, entry))
    return out


__all__ = ["BootSector", "boot_sector", "check_partitions", "read_sample"]
