"""IOCTL and FSCTL codes, and the structures they return, parsed from bytes (winioctl.h).

    IOCTL_DISK_GET_LENGTH_INFO        GET_LENGTH_INFORMATION       { LARGE_INTEGER Length }
    IOCTL_DISK_GET_DRIVE_GEOMETRY_EX  DISK_GEOMETRY_EX             DISK_GEOMETRY (24) + DiskSize
    IOCTL_DISK_GET_DRIVE_LAYOUT_EX    DRIVE_LAYOUT_INFORMATION_EX  48-byte head + 144-byte
                                                                   PARTITION_INFORMATION_EX[]
    FSCTL_GET_NTFS_VOLUME_DATA        NTFS_VOLUME_DATA_BUFFER      BytesPerCluster at 44
    FSCTL_GET_VOLUME_BITMAP           VOLUME_BITMAP_BUFFER         StartingLcn, BitmapSize, bits
    FSCTL_GET_RETRIEVAL_POINTERS      RETRIEVAL_POINTERS_BUFFER    ExtentCount, StartingVcn,
                                                                   { NextVcn, Lcn }[]

Codes are computed with ``CTL_CODE`` as winioctl.h does (and checked against the header's
values in the tests). Layouts and offsets follow Microsoft's "winioctl.h" reference pages; the
parsers check sizes first and raise ``StructError`` naming the structure.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from ...errors import E3Error

FILE_DEVICE_DISK = 0x07
FILE_DEVICE_FILE_SYSTEM = 0x09
METHOD_BUFFERED = 0
METHOD_NEITHER = 3
FILE_ANY_ACCESS = 0
FILE_READ_ACCESS = 1


def ctl_code(device_type: int, function: int, method: int, access: int) -> int:
    """winioctl.h's CTL_CODE macro."""
    return (device_type << 16) | (access << 14) | (function << 2) | method


IOCTL_DISK_GET_DRIVE_LAYOUT_EX = ctl_code(FILE_DEVICE_DISK, 0x0014, METHOD_BUFFERED, FILE_ANY_ACCESS)
IOCTL_DISK_GET_LENGTH_INFO = ctl_code(FILE_DEVICE_DISK, 0x0017, METHOD_BUFFERED, FILE_READ_ACCESS)
IOCTL_DISK_GET_DRIVE_GEOMETRY_EX = ctl_code(FILE_DEVICE_DISK, 0x0028, METHOD_BUFFERED, FILE_ANY_ACCESS)
FSCTL_GET_NTFS_VOLUME_DATA = ctl_code(FILE_DEVICE_FILE_SYSTEM, 25, METHOD_BUFFERED, FILE_ANY_ACCESS)
FSCTL_GET_VOLUME_BITMAP = ctl_code(FILE_DEVICE_FILE_SYSTEM, 27, METHOD_NEITHER, FILE_ANY_ACCESS)
FSCTL_GET_RETRIEVAL_POINTERS = ctl_code(FILE_DEVICE_FILE_SYSTEM, 28, METHOD_NEITHER, FILE_ANY_ACCESS)
FSCTL_ALLOW_EXTENDED_DASD_IO = ctl_code(FILE_DEVICE_FILE_SYSTEM, 32, METHOD_NEITHER, FILE_ANY_ACCESS)

PARTITION_STYLE_MBR = 0
PARTITION_STYLE_GPT = 1
PARTITION_STYLE_RAW = 2
PARTITION_STYLES = {PARTITION_STYLE_MBR: "mbr", PARTITION_STYLE_GPT: "gpt", PARTITION_STYLE_RAW: "raw"}

DRIVE_LAYOUT_HEAD = 48  # PartitionStyle, PartitionCount, then the MBR/GPT union padded to 40
PARTITION_ENTRY_SIZE = 144  # PARTITION_INFORMATION_EX
VOLUME_BITMAP_HEAD = 16  # StartingLcn, BitmapSize
RETRIEVAL_HEAD = 16  # ExtentCount (DWORD, padded to 8), StartingVcn
RETRIEVAL_EXTENT = 16  # NextVcn, Lcn


class StructError(E3Error):
    """Bytes that cannot be the structure an IOCTL documents."""


@dataclass(frozen=True)
class PartitionInfo:
    """One PARTITION_INFORMATION_EX: offsets in bytes; ``type`` is the MBR type byte as
    ``0x07`` or the GPT type GUID."""

    style: str
    number: int
    offset: int
    length: int
    type: str
    partition_id: str = ""
    name: str = ""
    bootable: bool = False


@dataclass(frozen=True)
class DriveLayout:
    style: str  # mbr, gpt, raw
    partitions: tuple[PartitionInfo, ...]
    disk_id: str = ""  # GPT DiskId GUID, or the MBR signature as 8 hex digits


def parse_length(data: bytes) -> int:
    if len(data) < 8:
        raise StructError(f"GET_LENGTH_INFORMATION: {len(data)} bytes, expected 8")
    return int(struct.unpack_from("<q", data)[0])


def parse_sector_size(data: bytes) -> int:
    """DISK_GEOMETRY_EX: DISK_GEOMETRY.BytesPerSector (offset 20)."""
    if len(data) < 32:
        raise StructError(f"DISK_GEOMETRY_EX: {len(data)} bytes, expected at least 32")
    return int(struct.unpack_from("<I", data, 20)[0])


def _guid(data: bytes, offset: int) -> str:
    return str(uuid.UUID(bytes_le=bytes(data[offset : offset + 16]))).upper()


def parse_drive_layout(data: bytes) -> DriveLayout:
    """DRIVE_LAYOUT_INFORMATION_EX. Unused MBR slots (type 0, or length 0) are skipped: an MBR
    layout always reports a multiple of four entries."""
    if len(data) < DRIVE_LAYOUT_HEAD:
        raise StructError(f"DRIVE_LAYOUT_INFORMATION_EX: {len(data)} bytes, shorter than its 48-byte head")
    style_code, count = struct.unpack_from("<II", data)
    style = PARTITION_STYLES.get(style_code)
    if style is None:
        raise StructError(f"DRIVE_LAYOUT_INFORMATION_EX: unknown PartitionStyle {style_code}")
    need = DRIVE_LAYOUT_HEAD + count * PARTITION_ENTRY_SIZE
    if len(data) < need:
        raise StructError(f"DRIVE_LAYOUT_INFORMATION_EX: {count} partitions need {need} bytes, got {len(data)}")
    disk_id = ""
    if style == "gpt":
        disk_id = _guid(data, 8)
    elif style == "mbr":
        disk_id = f"{struct.unpack_from('<I', data, 8)[0]:08X}"
    parts = []
    for i in range(count):
        base = DRIVE_LAYOUT_HEAD + i * PARTITION_ENTRY_SIZE
        pstyle, offset, length, number = struct.unpack_from("<I4xqqI", data, base)
        if pstyle == PARTITION_STYLE_GPT:
            name = data[base + 72 : base + 144].decode("utf-16-le", "replace").split("\0", 1)[0]
            parts.append(PartitionInfo("gpt", number, offset, length, _guid(data, base + 32),
                                       _guid(data, base + 48), name))
        elif pstyle == PARTITION_STYLE_MBR:
            ptype, boot = struct.unpack_from("<BB", data, base + 32)
            if ptype == 0 or length == 0:
                continue
            parts.append(PartitionInfo("mbr", number, offset, length, f"0x{ptype:02X}", bootable=bool(boot)))
        else:
            raise StructError(f"PARTITION_INFORMATION_EX {i}: unknown PartitionStyle {pstyle}")
    return DriveLayout(style, tuple(parts), disk_id)


def parse_cluster_size(data: bytes) -> int:
    """NTFS_VOLUME_DATA_BUFFER.BytesPerCluster (offset 44)."""
    if len(data) < 48:
        raise StructError(f"NTFS_VOLUME_DATA_BUFFER: {len(data)} bytes, expected at least 48")
    size = int(struct.unpack_from("<I", data, 44)[0])
    if size == 0 or size & (size - 1):
        raise StructError(f"NTFS_VOLUME_DATA_BUFFER: BytesPerCluster {size} is not a power of two")
    return size


@dataclass(frozen=True)
class BitmapPage:
    """One VOLUME_BITMAP_BUFFER: ``bits`` valid bits from ``starting_lcn``; ``remaining`` is
    BitmapSize, the clusters from ``starting_lcn`` to the end of the volume (not the bits
    returned: with ERROR_MORE_DATA the buffer holds fewer)."""

    starting_lcn: int
    remaining: int
    bitmap: bytes
    bits: int


def parse_volume_bitmap(data: bytes) -> BitmapPage:
    if len(data) < VOLUME_BITMAP_HEAD:
        raise StructError(f"VOLUME_BITMAP_BUFFER: {len(data)} bytes, shorter than its 16-byte head")
    start, remaining = struct.unpack_from("<qq", data)
    if start < 0 or remaining < 0:
        raise StructError(f"VOLUME_BITMAP_BUFFER: negative StartingLcn {start} or BitmapSize {remaining}")
    bitmap = bytes(data[VOLUME_BITMAP_HEAD:])
    return BitmapPage(start, remaining, bitmap, min(remaining, len(bitmap) * 8))


@dataclass(frozen=True)
class RetrievalPage:
    """One RETRIEVAL_POINTERS_BUFFER as (vcn, clusters, lcn) runs; lcn -1: not allocated."""

    starting_vcn: int
    runs: tuple[tuple[int, int, int], ...]

    @property
    def next_vcn(self) -> int:
        return self.runs[-1][0] + self.runs[-1][1] if self.runs else self.starting_vcn


def parse_retrieval_pointers(data: bytes) -> RetrievalPage:
    if len(data) < RETRIEVAL_HEAD:
        raise StructError(f"RETRIEVAL_POINTERS_BUFFER: {len(data)} bytes, shorter than its 16-byte head")
    count, vcn = struct.unpack_from("<I4xq", data)
    need = RETRIEVAL_HEAD + count * RETRIEVAL_EXTENT
    if len(data) < need:
        raise StructError(f"RETRIEVAL_POINTERS_BUFFER: {count} extents need {need} bytes, got {len(data)}")
    runs = []
    for i in range(count):
        next_vcn, lcn = struct.unpack_from("<qq", data, RETRIEVAL_HEAD + i * RETRIEVAL_EXTENT)
        if next_vcn <= vcn:
            raise StructError(f"RETRIEVAL_POINTERS_BUFFER: extent {i} ends at VCN {next_vcn}, not after {vcn}")
        runs.append((vcn, next_vcn - vcn, lcn))
        vcn = next_vcn
    return RetrievalPage(struct.unpack_from("<q", data, 8)[0], tuple(runs))


def starting_lcn(lcn: int) -> bytes:
    """STARTING_LCN_INPUT_BUFFER."""
    return struct.pack("<q", lcn)


def starting_vcn(vcn: int) -> bytes:
    """STARTING_VCN_INPUT_BUFFER."""
    return struct.pack("<q", vcn)


__all__ = [
    "FSCTL_ALLOW_EXTENDED_DASD_IO",
    "FSCTL_GET_NTFS_VOLUME_DATA",
    "FSCTL_GET_RETRIEVAL_POINTERS",
    "FSCTL_GET_VOLUME_BITMAP",
    "IOCTL_DISK_GET_DRIVE_GEOMETRY_EX",
    "IOCTL_DISK_GET_DRIVE_LAYOUT_EX",
    "IOCTL_DISK_GET_LENGTH_INFO",
    "BitmapPage",
    "DriveLayout",
    "PartitionInfo",
    "RetrievalPage",
    "StructError",
    "ctl_code",
    "parse_cluster_size",
    "parse_drive_layout",
    "parse_length",
    "parse_retrieval_pointers",
    "parse_sector_size",
    "parse_volume_bitmap",
    "starting_lcn",
    "starting_vcn",
]
