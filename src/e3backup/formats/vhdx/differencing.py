"""Creating an empty differencing VHDX (an AVHDX): what Hyper-V makes when it takes a checkpoint.

The child has the parent's virtual size, block size and sector sizes, every payload block
`NOT_PRESENT` (read from the parent), zeroed sector bitmaps, and a parent locator with `parent_linkage` = the parent's
DataWriteGuid, `relative_path` (the parent's file name: Hyper-V keeps a disk's AVHDX files beside
it) and `absolute_win32_path`. Laid out as our dynamic files are ([MS-VHDX] 2.1, 1 MiB aligned):
headers and region tables, a 1 MiB empty log, 1 MiB of metadata, the BAT (whole chunks: a
differencing BAT ends with a sector bitmap entry). Data then goes in through `VhdxUpdater`.
"""

from __future__ import annotations

import os
import struct
import uuid

from e3backup.formats.vhdx import constants as c
from e3backup.formats.vhdx.geometry import Geometry
from e3backup.formats.vhdx.layout import BAT_OFFSET, METADATA_OFFSET, header_section, metadata_region
from e3backup.formats.vhdx.reader import VhdxReader
from e3backup.formats.vhdx.structures import (
    FileParameters,
    encode_bat_entry,
    encode_file_identifier,
    encode_file_parameters,
    encode_parent_locator,
    encode_u32,
    encode_u64,
    guid_string,
)
from e3backup.platform.compat import O_BINARY, O_CLOEXEC, pwrite


def create_differencing(child: str | os.PathLike[str], parent: str | os.PathLike[str]) -> uuid.UUID:
    """Write an empty child of ``parent`` at ``child`` (which must not exist); returns the child's
    DataWriteGuid."""
    child, parent = os.fspath(child), os.fspath(parent)
    with VhdxReader(parent) as p:
        size, block, lss, pss, linkage = (p.virtual_size, p.block_size, p.logical_sector_size,
                                          p.physical_sector_size, p.header.data_write_guid)
    g = Geometry(size, block, lss, has_parent=True)
    bat_length = -(-g.bat_entries * c.BAT_ENTRY_SIZE // c.ALIGNMENT) * c.ALIGNMENT
    locator = {
        c.PARENT_LINKAGE: guid_string(linkage),
        c.RELATIVE_PATH: os.path.basename(parent),
        c.ABSOLUTE_WIN32_PATH: os.path.abspath(parent),
    }
    metadata = metadata_region([
        (c.FILE_PARAMETERS_GUID, encode_file_parameters(FileParameters(block, False, True)), False),
        (c.VIRTUAL_DISK_SIZE_GUID, encode_u64(size), True),
        (c.PAGE_83_DATA_GUID, uuid.uuid4().bytes_le, True),
        (c.LOGICAL_SECTOR_SIZE_GUID, encode_u32(lss), True),
        (c.PHYSICAL_SECTOR_SIZE_GUID, encode_u32(pss), True),
        (c.PARENT_LOCATOR_GUID, encode_parent_locator(c.VHDX_PARENT_LOCATOR_TYPE_GUID, locator), True),
    ])
    # every sector bitmap block present and all zero (every sector from the parent): valid per
    # 2.5.1.2, and libvhdi (20210425) reads a NOT_PRESENT bitmap entry from file offset 0
    bat = [0] * g.bat_entries
    end = BAT_OFFSET + bat_length
    for chunk in range(g.sector_bitmap_blocks):
        bat[g.sector_bitmap_entry_index(chunk)] = encode_bat_entry(c.SB_BLOCK_PRESENT, end)
        end += c.SECTOR_BITMAP_BLOCK_SIZE
    data_write_guid = uuid.uuid4()
    pieces = [
        (0, encode_file_identifier("e3backup")),
        *header_section(uuid.uuid4(), data_write_guid, bat_length),
        (METADATA_OFFSET, metadata),
        (BAT_OFFSET, struct.pack(f"<{g.bat_entries}Q", *bat)),
    ]
    fd = os.open(child, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_BINARY | O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, end)  # the bitmaps are holes: zeros
        for offset, data in pieces:
            pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    return data_write_guid


__all__ = ["create_differencing"]
