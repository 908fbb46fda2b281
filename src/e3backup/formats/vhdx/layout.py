"""The layout of a VHDX file we write, computed whole before the first byte is written. Pure.

Front to back, every object 1 MiB aligned ([MS-VHDX] 2.1):

    0        header section: file type identifier, header 1 (seq n), header 2 (seq n+1),
             region table 1, region table 2 (identical: BAT and metadata, both required)
    1 MiB    log, 1 MiB, empty (LogGuid is zero: nothing to replay)
    2 MiB    metadata region, 1 MiB: table, then file parameters, virtual disk size,
             page 83 data, logical and physical sector size
    3 MiB    BAT, rounded up to 1 MiB
    ...      payload blocks, in ascending virtual order, only for the allocated blocks

Sector bitmap entries are SB_BLOCK_NOT_PRESENT (nothing has a parent); unallocated payload
blocks are PAYLOAD_BLOCK_NOT_PRESENT, which every reader (Hyper-V, qemu) reads as zeros.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from e3backup.formats.image import Extent
from e3backup.formats.vhdx.constants import (
    ALIGNMENT,
    BAT_ENTRY_SIZE,
    BAT_REGION_GUID,
    DEFAULT_BLOCK_SIZE,
    FILE_PARAMETERS_GUID,
    FILE_TYPE_IDENTIFIER_OFFSET,
    HEADER1_OFFSET,
    HEADER2_OFFSET,
    HEADER_SECTION_SIZE,
    HEADER_VERSION,
    LOG_VERSION,
    LOGICAL_SECTOR_SIZE_GUID,
    METADATA_REGION_GUID,
    METADATA_TABLE_SIZE,
    MIN_LOG_LENGTH,
    PAGE_83_DATA_GUID,
    PAYLOAD_BLOCK_FULLY_PRESENT,
    PHYSICAL_SECTOR_SIZE_GUID,
    REGION_TABLE1_OFFSET,
    REGION_TABLE2_OFFSET,
    SECTOR_SIZES,
    VIRTUAL_DISK_SIZE_GUID,
)
from e3backup.formats.vhdx.geometry import Geometry
from e3backup.formats.vhdx.structures import (
    ZERO_GUID,
    FileParameters,
    Header,
    MetadataTableEntry,
    RegionTableEntry,
    encode_bat_entry,
    encode_file_identifier,
    encode_file_parameters,
    encode_header,
    encode_metadata_table,
    encode_region_table,
    encode_u32,
    encode_u64,
)

LOG_OFFSET = HEADER_SECTION_SIZE
LOG_LENGTH = MIN_LOG_LENGTH
METADATA_OFFSET = LOG_OFFSET + LOG_LENGTH
METADATA_LENGTH = 1 * ALIGNMENT
BAT_OFFSET = METADATA_OFFSET + METADATA_LENGTH
UNALLOCATED = -1


def _align(value: int) -> int:
    return -(-value // ALIGNMENT) * ALIGNMENT


@dataclass(frozen=True)
class VhdxOptions:
    """How to shape the file. Defaults are Hyper-V's: 32 MiB blocks, 512/4096 sectors."""

    block_size: int = DEFAULT_BLOCK_SIZE
    logical_sector_size: int = 512
    physical_sector_size: int = 4096
    fixed: bool = False  # every block allocated and LeaveBlockAllocated set
    creator: str = "e3backup"

    def __post_init__(self) -> None:
        if self.physical_sector_size not in SECTOR_SIZES:
            raise ValueError(f"physical sector size {self.physical_sector_size} is not 512 or 4096")


@dataclass(frozen=True)
class VhdxLayout:
    geometry: Geometry
    options: VhdxOptions
    bat_length: int
    block_offsets: array[int]  # file offset of each payload block, UNALLOCATED when absent
    file_size: int
    file_write_guid: UUID = field(default_factory=uuid4)
    data_write_guid: UUID = field(default_factory=uuid4)
    page_83: UUID = field(default_factory=uuid4)

    @property
    def payload_offset(self) -> int:
        return BAT_OFFSET + self.bat_length

    def file_identifier(self) -> tuple[int, bytes]:
        return FILE_TYPE_IDENTIFIER_OFFSET, encode_file_identifier(self.options.creator)

    def metadata_structures(self) -> list[tuple[int, bytes]]:
        """(file offset, bytes) of headers, region tables, metadata and BAT: all but payload."""
        g = self.geometry
        parameters = FileParameters(g.block_size, self.options.fixed, False)
        items = [
            (FILE_PARAMETERS_GUID, encode_file_parameters(parameters), False),
            (VIRTUAL_DISK_SIZE_GUID, encode_u64(g.virtual_size), True),
            (PAGE_83_DATA_GUID, self.page_83.bytes_le, True),
            (LOGICAL_SECTOR_SIZE_GUID, encode_u32(g.logical_sector_size), True),
            (PHYSICAL_SECTOR_SIZE_GUID, encode_u32(self.options.physical_sector_size), True),
        ]
        return [
            *header_section(self.file_write_guid, self.data_write_guid, self.bat_length),
            (METADATA_OFFSET, metadata_region(items)),
            (BAT_OFFSET, self._bat()),
        ]

    def _bat(self) -> bytes:
        g = self.geometry
        bat = array("Q", bytes(g.bat_entries * BAT_ENTRY_SIZE))
        for block, offset in enumerate(self.block_offsets):
            if offset != UNALLOCATED:
                bat[g.payload_entry_index(block)] = encode_bat_entry(PAYLOAD_BLOCK_FULLY_PRESENT, offset)
        if sys.byteorder == "big":
            bat.byteswap()
        return bat.tobytes()


def header_section(file_write_guid: UUID, data_write_guid: UUID, bat_length: int) -> list[tuple[int, bytes]]:
    """(file offset, bytes) of both headers and both region tables of a file laid out as above."""
    out = []
    for seq, offset in ((1, HEADER1_OFFSET), (2, HEADER2_OFFSET)):
        header = Header(
            sequence_number=seq,
            file_write_guid=file_write_guid,
            data_write_guid=data_write_guid,
            log_guid=ZERO_GUID,
            log_version=LOG_VERSION,
            version=HEADER_VERSION,
            log_length=LOG_LENGTH,
            log_offset=LOG_OFFSET,
        )
        out.append((offset, encode_header(header)))
    regions = encode_region_table(
        [
            RegionTableEntry(BAT_REGION_GUID, BAT_OFFSET, bat_length, required=True),
            RegionTableEntry(METADATA_REGION_GUID, METADATA_OFFSET, METADATA_LENGTH, required=True),
        ]
    )
    return [*out, (REGION_TABLE1_OFFSET, regions), (REGION_TABLE2_OFFSET, regions)]


def metadata_region(items: Iterable[tuple[UUID, bytes, bool]]) -> bytes:
    """The metadata table followed by its items, each (GUID, bytes, IsVirtualDisk), all required."""
    entries, data, cursor = [], bytearray(), METADATA_TABLE_SIZE
    for guid, item, virtual_disk in items:
        entries.append(MetadataTableEntry(guid, cursor, len(item), False, virtual_disk, True))
        data += item
        cursor += len(item)
    return encode_metadata_table(entries) + bytes(data)


def allocated_blocks(extents: Iterable[Extent] | None, geometry: Geometry) -> bytearray:
    """One flag per payload block: 1 where an extent touches it (every block when None)."""
    if extents is None:
        return bytearray(b"\1" * geometry.payload_blocks)
    flags = bytearray(geometry.payload_blocks)
    size = geometry.block_size
    for offset, length in extents:
        if length <= 0:
            continue
        end = min(offset + length, geometry.virtual_size)
        if offset < 0 or offset >= end:
            raise ValueError(f"allocated extent ({offset}, {length}) is outside the virtual disk")
        first, last = offset // size, (end - 1) // size
        flags[first : last + 1] = b"\1" * (last - first + 1)
    return flags


def plan_layout(
    virtual_size: int, allocated: Iterable[Extent] | None, options: VhdxOptions | None = None
) -> VhdxLayout:
    """The whole file: payload blocks for exactly the blocks `allocated` touches, in block order."""
    options = options or VhdxOptions()
    geometry = Geometry(virtual_size, options.block_size, options.logical_sector_size)
    flags = allocated_blocks(None if options.fixed else allocated, geometry)
    bat_length = _align(geometry.bat_entries * BAT_ENTRY_SIZE)
    offsets = array("q", [UNALLOCATED]) * geometry.payload_blocks
    cursor = BAT_OFFSET + bat_length
    for block in (i for i, flag in enumerate(flags) if flag):
        offsets[block] = cursor
        cursor += geometry.block_size
    return VhdxLayout(geometry, options, bat_length, offsets, file_size=cursor)


__all__ = [
    "BAT_OFFSET",
    "METADATA_OFFSET",
    "UNALLOCATED",
    "VhdxLayout",
    "VhdxOptions",
    "allocated_blocks",
    "header_section",
    "metadata_region",
    "plan_layout",
]
