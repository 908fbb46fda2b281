"""Builds differencing VHDX files for tests, laid out per [MS-VHDX] by hand.

No tool on Debian makes one (`qemu-img create -f vhdx -b ...` answers "Backing file not supported
for file format 'vhdx'"), so tests build them here and let libvhdi read them as the independent
judge. Block specs, by payload block index (absent blocks are PAYLOAD_BLOCK_NOT_PRESENT):

    ("full", data)             PAYLOAD_BLOCK_FULLY_PRESENT
    ("partial", data, sectors) PAYLOAD_BLOCK_PARTIALLY_PRESENT; `sectors` are the block's sector
                               indexes present in the child (bit set in the sector bitmap)
    ("zero",)                  PAYLOAD_BLOCK_ZERO
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from e3backup.formats.vhdx import constants as c
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
    encode_parent_locator,
    encode_region_table,
    encode_u32,
    encode_u64,
    guid_string,
)

BlockSpec = tuple[object, ...]
MiB = 1024 * 1024


def build_differencing(
    path: Path,
    *,
    virtual_size: int,
    block_size: int,
    parent_data_write_guid: uuid.UUID,
    locator: dict[str, str],
    blocks: dict[int, BlockSpec],
    logical_sector_size: int = 512,
) -> uuid.UUID:
    """Write the child at `path`; returns its DataWriteGuid (for a grandchild's linkage)."""
    g = Geometry(virtual_size, block_size, logical_sector_size, has_parent=True)
    entries = dict(locator)
    entries.setdefault(c.PARENT_LINKAGE, guid_string(parent_data_write_guid))
    metadata_offset, bat_offset = 2 * MiB, 3 * MiB
    bat_length = -(-g.bat_entries * 8 // MiB) * MiB
    cursor = bat_offset + bat_length
    bat = [0] * g.bat_entries
    writes: list[tuple[int, bytes]] = []
    bitmaps: dict[int, bytearray] = {}
    for block, spec in sorted(blocks.items()):
        index = g.payload_entry_index(block)
        if spec[0] == "zero":
            bat[index] = encode_bat_entry(c.PAYLOAD_BLOCK_ZERO, 0)
            continue
        data = spec[1]
        assert isinstance(data, bytes)
        writes.append((cursor, data))
        if spec[0] == "full":
            bat[index] = encode_bat_entry(c.PAYLOAD_BLOCK_FULLY_PRESENT, cursor)
        else:
            bat[index] = encode_bat_entry(c.PAYLOAD_BLOCK_PARTIALLY_PRESENT, cursor)
            chunk, within = divmod(block, g.chunk_ratio)
            bitmap = bitmaps.setdefault(chunk, bytearray(c.SECTOR_BITMAP_BLOCK_SIZE))
            for sector in spec[2]:  # type: ignore[attr-defined]
                bit = within * g.sectors_per_block + sector
                bitmap[bit // 8] |= 1 << (bit % 8)
        cursor += block_size
    for chunk, bitmap in sorted(bitmaps.items()):
        bat[g.sector_bitmap_entry_index(chunk)] = encode_bat_entry(c.SB_BLOCK_PRESENT, cursor)
        writes.append((cursor, bytes(bitmap)))
        cursor += c.SECTOR_BITMAP_BLOCK_SIZE

    items = [
        (c.FILE_PARAMETERS_GUID, encode_file_parameters(FileParameters(block_size, False, True)), False),
        (c.VIRTUAL_DISK_SIZE_GUID, encode_u64(virtual_size), True),
        (c.PAGE_83_DATA_GUID, uuid.uuid4().bytes_le, True),
        (c.LOGICAL_SECTOR_SIZE_GUID, encode_u32(logical_sector_size), True),
        (c.PHYSICAL_SECTOR_SIZE_GUID, encode_u32(4096), True),
        (c.PARENT_LOCATOR_GUID, encode_parent_locator(c.VHDX_PARENT_LOCATOR_TYPE_GUID, entries), True),
    ]
    table, blob, at = [], b"", c.METADATA_TABLE_SIZE
    for guid, item, virtual_disk in items:
        table.append(MetadataTableEntry(guid, at, len(item), False, virtual_disk, True))
        blob += item
        at += len(item)
    data_write_guid = uuid.uuid4()
    with open(path, "wb") as f:
        f.truncate(cursor)

        def put(offset: int, data: bytes) -> None:
            f.seek(offset)
            f.write(data)

        put(0, encode_file_identifier("e3backup tests"))
        for seq, offset in ((1, c.HEADER1_OFFSET), (2, c.HEADER2_OFFSET)):
            header = Header(seq, uuid.uuid4(), data_write_guid, ZERO_GUID, 0, 1, MiB, MiB)
            put(offset, encode_header(header))
        regions = encode_region_table(
            [
                RegionTableEntry(c.BAT_REGION_GUID, bat_offset, bat_length, True),
                RegionTableEntry(c.METADATA_REGION_GUID, metadata_offset, MiB, True),
            ]
        )
        put(c.REGION_TABLE1_OFFSET, regions)
        put(c.REGION_TABLE2_OFFSET, regions)
        put(metadata_offset, encode_metadata_table(table) + blob)
        put(bat_offset, struct.pack(f"<{len(bat)}Q", *bat))
        for offset, data in writes:
            put(offset, data)
    return data_write_guid


def expected_image(parent: bytes, blocks: dict[int, BlockSpec], block_size: int, sector: int = 512) -> bytes:
    """What the child must read as, computed from the specs alone."""
    out = bytearray(parent)
    for block, spec in blocks.items():
        base = block * block_size
        end = min(base + block_size, len(out))
        if spec[0] == "zero":
            out[base:end] = bytes(end - base)
        elif spec[0] == "full":
            out[base:end] = spec[1][: end - base]  # type: ignore[index]
        else:
            data = spec[1]
            for s in spec[2]:  # type: ignore[attr-defined]
                lo = base + s * sector
                if lo < end:
                    out[lo : lo + sector] = data[s * sector : (s + 1) * sector]  # type: ignore[index]
    return bytes(out)
