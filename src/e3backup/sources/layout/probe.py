"""Name the file system at the start of a partition by its magic numbers."""

from __future__ import annotations

import struct

from e3backup.sources.device import ByteSource

EXT_MAGIC = 0xEF53
_EXT4_INCOMPAT = 0x40 | 0x80 | 0x200  # extents, 64bit, flex_bg
_EXT4_RO_COMPAT = 0x8 | 0x10 | 0x20 | 0x40 | 0x400  # huge_file, gdt_csum, dir_nlink, extra_isize, csum


def probe_filesystem(source: ByteSource) -> str | None:
    """``ext2``/``ext3``/``ext4``, ``ntfs``, or another known name; None when unrecognised."""
    head = source.read_at(0, 4096)
    if len(head) < 2048:
        return None
    if struct.unpack_from("<H", head, 1024 + 56)[0] == EXT_MAGIC:
        compat, incompat, ro = struct.unpack_from("<III", head, 1024 + 92)
        if incompat & _EXT4_INCOMPAT or ro & _EXT4_RO_COMPAT:
            return "ext4"
        return "ext3" if compat & 0x4 else "ext2"
    if head[3:11] == b"NTFS    ":
        return "ntfs"
    if head[:4] == b"XFSB":
        return "xfs"
    if head[:6] == b"LUKS\xba\xbe":
        return "luks"
    if head[512:520] == b"LABELONE":
        return "lvm2-pv"
    if head[3:11] == b"EXFAT   ":
        return "exfat"
    if head[82:87] == b"FAT32" or head[54:59] in (b"FAT12", b"FAT16"):
        return "vfat"
    if len(head) == 4096 and head[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"):
        return "swap"
    if source.read_at(65536 + 64, 8) == b"_BHRfS_M":
        return "btrfs"
    return None


__all__ = ["probe_filesystem"]
