"""Encoders and decoders of the VHDX structures: round trips and named errors."""

from __future__ import annotations

import uuid

import pytest

from e3backup.errors import InvalidVhdxError
from e3backup.formats.vhdx.constants import BAT_REGION_GUID, METADATA_REGION_GUID, PARENT_LOCATOR_GUID
from e3backup.formats.vhdx.geometry import Geometry
from e3backup.formats.vhdx.reader import bit_runs
from e3backup.formats.vhdx.structures import (
    Header,
    MetadataTableEntry,
    RegionTableEntry,
    Where,
    decode_bat_entry,
    encode_bat_entry,
    encode_header,
    encode_metadata_table,
    encode_parent_locator,
    encode_region_table,
    parse_header,
    parse_metadata_table,
    parse_parent_locator,
    parse_region_table,
)

HERE = Where("t.vhdx", 65536)


def test_header_round_trip_and_errors() -> None:
    header = Header(7, uuid.uuid4(), uuid.uuid4(), uuid.UUID(int=0), 0, 1, 1 << 20, 1 << 20)
    data = encode_header(header)
    assert len(data) == 4096 and data[:4] == b"head"
    assert parse_header(data, HERE) == header
    damaged = bytearray(data)
    damaged[3000] ^= 1  # the checksum covers all 4 KiB, reserved bytes included
    with pytest.raises(InvalidVhdxError, match="header at offset 65540: CRC-32C checksum mismatch"):
        parse_header(bytes(damaged), HERE)
    with pytest.raises(InvalidVhdxError, match="signature b'daeh'"):
        parse_header(b"daeh" + data[4:], HERE)


def test_region_and_metadata_tables_round_trip() -> None:
    regions = [
        RegionTableEntry(BAT_REGION_GUID, 3 << 20, 1 << 20, True),
        RegionTableEntry(METADATA_REGION_GUID, 2 << 20, 1 << 20, True),
    ]
    assert parse_region_table(encode_region_table(regions), HERE) == regions
    entries = [MetadataTableEntry(PARENT_LOCATOR_GUID, 65536, 300, False, True, True)]
    table = encode_metadata_table(entries)
    assert table[:8] == b"metadata" and len(table) == 65536
    assert parse_metadata_table(table, HERE) == entries


def test_parent_locator_round_trip() -> None:
    kind = uuid.uuid4()
    pairs = {"parent_linkage": "{" + str(uuid.uuid4()) + "}", "relative_path": ".\\a\\b.vhdx"}
    assert parse_parent_locator(encode_parent_locator(kind, pairs), HERE) == (kind, pairs)
    with pytest.raises(InvalidVhdxError, match="parent locator"):
        parse_parent_locator(encode_parent_locator(kind, pairs)[:40], HERE)


def test_bat_entry_bits() -> None:
    value = encode_bat_entry(6, 5 << 20)
    assert value == (5 << 20) | 6
    assert decode_bat_entry(value | (1 << 10)) == (6, 5 << 20)  # reserved bits ignored
    with pytest.raises(ValueError, match="multiple of 1 MiB"):
        encode_bat_entry(6, 4096)


def test_geometry_interleaving() -> None:
    g = Geometry((4 << 30) + 512, 32 << 20, 512)
    assert g.chunk_ratio == 128 and g.payload_blocks == 129
    assert [g.payload_entry_index(b) for b in (0, 127, 128)] == [0, 127, 129]
    assert g.sector_bitmap_entry_index(0) == 128
    assert g.bat_entries == 130
    diff = Geometry((4 << 30) + 512, 32 << 20, 512, has_parent=True)
    assert diff.bat_entries == 2 * 129
    assert Geometry(1 << 30, 1 << 20, 4096).chunk_ratio == 32768
    with pytest.raises(ValueError, match="power of two"):
        Geometry(1 << 30, 3 << 20, 512)


def test_bit_runs() -> None:
    bits = bytes([0b11110001, 0xFF, 0x00, 0b00000001])
    assert list(bit_runs(bits, 0, 32)) == [
        (0, 1, 1),
        (1, 3, 0),
        (4, 12, 1),
        (16, 8, 0),
        (24, 1, 1),
        (25, 7, 0),
    ]
    assert list(bit_runs(bits, 3, 5)) == [(0, 1, 0), (1, 4, 1)]


def test_exported_members_exist() -> None:
    import e3backup.formats as formats
    import e3backup.formats.vhdx as vhdx

    for module in (formats, vhdx):
        assert sorted(module.__all__) == sorted(set(module.__all__))
        assert all(hasattr(module, name) for name in module.__all__)
