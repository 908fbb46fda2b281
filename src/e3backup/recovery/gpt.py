"""Moving the backup GPT to the end of a larger target disk after a restore.

A GPT disk restored to a larger disk keeps its backup header where the old disk ended, so
firmware and tools see a damaged table. As ``sgdisk -e`` does: the primary header's
``alternate_lba`` becomes the new last sector and ``last_usable_lba`` grows with it; the entry
array and a backup header are written at the new end (header at the last LBA, entries just
before it); the old backup header is zeroed; the protective MBR's size is updated. CRCs are
recomputed (UEFI spec 2.10, 5.3.2). Partitions themselves are not touched.
"""

from __future__ import annotations

import os
import struct
import zlib

from ..errors import E3Error
from ..platform.compat import O_BINARY, O_CLOEXEC, pread, pwrite
from ..sources.layout.gpt import SIGNATURE

_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")


class GptError(E3Error):
    pass


def _with_crc(header: bytearray, size: int) -> None:
    header[16:20] = b"\0\0\0\0"
    struct.pack_into("<I", header, 16, zlib.crc32(bytes(header[:size])))


def relocate_backup_gpt(path: str, sector_size: int) -> tuple[int, int]:
    """Move the backup GPT of the disk at ``path`` to its end; returns (old, new) backup LBA.
    A disk whose backup is already at the end is left alone (old == new)."""
    fd = os.open(path, os.O_RDWR | O_BINARY | O_CLOEXEC)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        ss = sector_size
        last = size // ss - 1
        primary = bytearray(pread(fd, ss, ss))
        if primary[:8] != SIGNATURE:
            raise GptError(f"{path}: no primary GPT header to relocate")
        (_, _rev, hsize, _crc, _, _my, alt, _first, _last_usable, _guid, elba, n, esize, ecrc) = _HEADER.unpack_from(
            primary
        )
        if alt == last:
            return alt, alt
        entry_sectors = -(-n * esize // ss)
        entries = pread(fd, n * esize, elba * ss)
        if zlib.crc32(entries) != ecrc:
            raise GptError(f"{path}: the GPT entry array fails its CRC; not touching it")
        new_last_usable = last - entry_sectors - 1
        struct.pack_into("<Q", primary, 32, last)  # alternate_lba
        struct.pack_into("<Q", primary, 48, new_last_usable)
        _with_crc(primary, hsize)
        backup = bytearray(ss)
        backup[:hsize] = primary[:hsize]
        struct.pack_into("<QQ", backup, 24, last, 1)  # my_lba, alternate_lba
        struct.pack_into("<Q", backup, 72, last - entry_sectors)  # entries_lba
        _with_crc(backup, hsize)
        pwrite(fd, entries, (last - entry_sectors) * ss)
        pwrite(fd, bytes(backup), last * ss)
        pwrite(fd, bytes(primary), ss)
        if 1 < alt < last:  # the old backup header, now inside the disk: no tool must find it
            pwrite(fd, bytes(ss), alt * ss)
        mbr = bytearray(pread(fd, 512, 0))
        if mbr[510:512] == b"\x55\xaa" and mbr[446 + 4] == 0xEE:
            struct.pack_into("<I", mbr, 446 + 12, min(last, 0xFFFFFFFF))
            pwrite(fd, bytes(mbr), 0)
        os.fsync(fd)
        return alt, last
    finally:
        os.close(fd)


def zero_tail(path: str, start: int) -> None:
    """Zero the disk from ``start`` to its end: a smaller target's bytes past the restored chunks
    (never more than one chunk) must not keep what the disk held before."""
    fd = os.open(path, os.O_RDWR | O_BINARY | O_CLOEXEC)
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        block = bytes(1 << 20)
        for off in range(start, end, len(block)):
            pwrite(fd, block[: min(len(block), end - off)], off)
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["GptError", "relocate_backup_gpt", "zero_tail"]
