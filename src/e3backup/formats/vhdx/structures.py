"""Pure encoding and decoding of the VHDX on-disk structures ([MS-VHDX] section 2). No I/O.

All integers are little-endian; GUIDs are stored as `UUID.bytes_le`.

    File Type Identifier (2.2.1)  "vhdxfile", then Creator: 256 UTF-16 characters
    Header (2.2.2), 4 KiB         Signature "head" u32 | Checksum u32 | SequenceNumber u64 |
                                  FileWriteGuid | DataWriteGuid | LogGuid (16 each) |
                                  LogVersion u16 | Version u16 | LogLength u32 | LogOffset u64
    Region Table (2.2.3), 64 KiB  Signature "regi" u32 | Checksum u32 | EntryCount u32 | 0 u32,
                                  entries: Guid | FileOffset u64 | Length u32 | Required:1 bit
    Metadata Table (2.6.1)        Signature "metadata" u64 | 0 u16 | EntryCount u16 | 0 x 20,
                                  entries: ItemId | Offset u32 | Length u32 |
                                  IsUser:1 IsVirtualDisk:1 IsRequired:1 bits | 0 u32
    BAT entry (2.5.1)             State: bits 0-2 | FileOffsetMB: bits 20-63
    Parent Locator (2.6.2.6)      LocatorType | 0 u16 | KeyValueCount u16, entries:
                                  KeyOffset u32 | ValueOffset u32 | KeyLength u16 | ValueLength u16,
                                  keys and values UTF-16LE, offsets from the item's start

Checksums are CRC-32C over the whole structure with the checksum field as zero. Every decoder
checks signature and checksum and raises `InvalidVhdxError` naming the structure and offset.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from uuid import UUID

from e3backup.errors import InvalidVhdxError
from e3backup.formats.crc32c import crc32c
from e3backup.formats.vhdx.constants import (
    BAT_FILE_OFFSET_SHIFT,
    BAT_STATE_MASK,
    CREATOR_SIZE,
    FILE_TYPE_IDENTIFIER_SIGNATURE,
    HAS_PARENT,
    HEADER_SIGNATURE,
    HEADER_SIZE,
    LEAVE_BLOCK_ALLOCATED,
    METADATA_FLAG_IS_REQUIRED,
    METADATA_FLAG_IS_USER,
    METADATA_FLAG_IS_VIRTUAL_DISK,
    METADATA_TABLE_ENTRY_SIZE,
    METADATA_TABLE_HEADER_SIZE,
    METADATA_TABLE_MAX_ENTRIES,
    METADATA_TABLE_SIGNATURE,
    METADATA_TABLE_SIZE,
    PARENT_LOCATOR_ENTRY_SIZE,
    PARENT_LOCATOR_HEADER_SIZE,
    REGION_ENTRY_REQUIRED,
    REGION_TABLE_ENTRY_SIZE,
    REGION_TABLE_HEADER_SIZE,
    REGION_TABLE_MAX_ENTRIES,
    REGION_TABLE_SIGNATURE,
    REGION_TABLE_SIZE,
)

ZERO_GUID = UUID(int=0)
_HEADER = struct.Struct("<4sIQ16s16s16sHHIQ")
_REGION_HEADER = struct.Struct("<4sIII")
_REGION_ENTRY = struct.Struct("<16sQII")
_METADATA_HEADER = struct.Struct("<8sHH20x")
_METADATA_ENTRY = struct.Struct("<16sIII4x")
_FILE_PARAMETERS = struct.Struct("<II")
_LOCATOR_HEADER = struct.Struct("<16sHH")
_LOCATOR_ENTRY = struct.Struct("<IIHH")
_CHECKSUM_OFFSET = 4


class Where:
    """Error context for the decoders: the file and the structure's offset in it."""

    def __init__(self, path: str, offset: int) -> None:
        self.path = path
        self.offset = offset

    def error(self, structure: str, reason: str, at: int = 0) -> InvalidVhdxError:
        return InvalidVhdxError(self.path, structure, self.offset + at, reason)


def _with_checksum(buf: bytearray) -> bytes:
    struct.pack_into("<I", buf, _CHECKSUM_OFFSET, 0)
    struct.pack_into("<I", buf, _CHECKSUM_OFFSET, crc32c(buf))
    return bytes(buf)


def _checksum_ok(data: bytes) -> bool:
    stored: int = struct.unpack_from("<I", data, _CHECKSUM_OFFSET)[0]
    zeroed = bytearray(data)
    struct.pack_into("<I", zeroed, _CHECKSUM_OFFSET, 0)
    return crc32c(zeroed) == stored


# -- 2.2.1 File Type Identifier ------------------------------------------------------------------


def encode_file_identifier(creator: str) -> bytes:
    raw = creator.encode("utf-16-le")[:CREATOR_SIZE]
    return FILE_TYPE_IDENTIFIER_SIGNATURE + raw.ljust(CREATOR_SIZE, b"\0")


def parse_file_identifier(data: bytes, where: Where) -> str:
    """The Creator string; raises when the "vhdxfile" signature is missing."""
    if data[:8] != FILE_TYPE_IDENTIFIER_SIGNATURE:
        raise where.error("file type identifier", f"signature {data[:8]!r} is not 'vhdxfile'")
    creator = data[8 : 8 + CREATOR_SIZE].decode("utf-16-le", errors="replace")
    return creator.split("\0", 1)[0]


# -- 2.2.2 Header --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    sequence_number: int
    file_write_guid: UUID
    data_write_guid: UUID
    log_guid: UUID
    log_version: int
    version: int
    log_length: int
    log_offset: int


def encode_header(header: Header) -> bytes:
    """The 4 KiB header with its checksum."""
    buf = bytearray(HEADER_SIZE)
    _HEADER.pack_into(
        buf,
        0,
        HEADER_SIGNATURE,
        0,
        header.sequence_number,
        header.file_write_guid.bytes_le,
        header.data_write_guid.bytes_le,
        header.log_guid.bytes_le,
        header.log_version,
        header.version,
        header.log_length,
        header.log_offset,
    )
    return _with_checksum(buf)


def parse_header(data: bytes, where: Where) -> Header:
    if len(data) < HEADER_SIZE:
        raise where.error("header", f"truncated: {len(data)} bytes")
    data = data[:HEADER_SIZE]
    fields = _HEADER.unpack_from(data)
    if fields[0] != HEADER_SIGNATURE:
        raise where.error("header", f"signature {fields[0]!r} is not 'head'")
    if not _checksum_ok(data):
        raise where.error("header", "CRC-32C checksum mismatch", _CHECKSUM_OFFSET)
    return Header(
        sequence_number=fields[2],
        file_write_guid=UUID(bytes_le=fields[3]),
        data_write_guid=UUID(bytes_le=fields[4]),
        log_guid=UUID(bytes_le=fields[5]),
        log_version=fields[6],
        version=fields[7],
        log_length=fields[8],
        log_offset=fields[9],
    )


# -- 2.2.3 Region Table --------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionTableEntry:
    guid: UUID
    file_offset: int
    length: int
    required: bool


def encode_region_table(entries: list[RegionTableEntry]) -> bytes:
    """The 64 KiB region table with its checksum."""
    if len(entries) > REGION_TABLE_MAX_ENTRIES:
        raise ValueError(f"{len(entries)} region table entries, at most {REGION_TABLE_MAX_ENTRIES}")
    buf = bytearray(REGION_TABLE_SIZE)
    _REGION_HEADER.pack_into(buf, 0, REGION_TABLE_SIGNATURE, 0, len(entries), 0)
    for i, entry in enumerate(entries):
        _REGION_ENTRY.pack_into(
            buf,
            REGION_TABLE_HEADER_SIZE + i * REGION_TABLE_ENTRY_SIZE,
            entry.guid.bytes_le,
            entry.file_offset,
            entry.length,
            REGION_ENTRY_REQUIRED if entry.required else 0,
        )
    return _with_checksum(buf)


def parse_region_table(data: bytes, where: Where) -> list[RegionTableEntry]:
    if len(data) < REGION_TABLE_SIZE:
        raise where.error("region table", f"truncated: {len(data)} bytes")
    data = data[:REGION_TABLE_SIZE]
    signature, _, count, _ = _REGION_HEADER.unpack_from(data)
    if signature != REGION_TABLE_SIGNATURE:
        raise where.error("region table", f"signature {signature!r} is not 'regi'")
    if not _checksum_ok(data):
        raise where.error("region table", "CRC-32C checksum mismatch", _CHECKSUM_OFFSET)
    if count > REGION_TABLE_MAX_ENTRIES:
        raise where.error("region table", f"EntryCount {count} exceeds {REGION_TABLE_MAX_ENTRIES}", 8)
    entries = []
    for i in range(count):
        guid, offset, length, flags = _REGION_ENTRY.unpack_from(
            data, REGION_TABLE_HEADER_SIZE + i * REGION_TABLE_ENTRY_SIZE
        )
        entries.append(RegionTableEntry(UUID(bytes_le=guid), offset, length, bool(flags & 1)))
    return entries


# -- 2.6.1 Metadata Table ------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataTableEntry:
    item_id: UUID
    offset: int
    length: int
    is_user: bool = False
    is_virtual_disk: bool = False
    is_required: bool = False


def encode_metadata_table(entries: list[MetadataTableEntry]) -> bytes:
    """The 64 KiB metadata table (it has no checksum)."""
    if len(entries) > METADATA_TABLE_MAX_ENTRIES:
        raise ValueError(f"{len(entries)} metadata entries, at most {METADATA_TABLE_MAX_ENTRIES}")
    buf = bytearray(METADATA_TABLE_SIZE)
    _METADATA_HEADER.pack_into(buf, 0, METADATA_TABLE_SIGNATURE, 0, len(entries))
    for i, entry in enumerate(entries):
        flags = (
            (METADATA_FLAG_IS_USER if entry.is_user else 0)
            | (METADATA_FLAG_IS_VIRTUAL_DISK if entry.is_virtual_disk else 0)
            | (METADATA_FLAG_IS_REQUIRED if entry.is_required else 0)
        )
        _METADATA_ENTRY.pack_into(
            buf,
            METADATA_TABLE_HEADER_SIZE + i * METADATA_TABLE_ENTRY_SIZE,
            entry.item_id.bytes_le,
            entry.offset,
            entry.length,
            flags,
        )
    return bytes(buf)


def parse_metadata_table(data: bytes, where: Where) -> list[MetadataTableEntry]:
    if len(data) < METADATA_TABLE_SIZE:
        raise where.error("metadata table", f"truncated: {len(data)} bytes")
    signature, _, count = _METADATA_HEADER.unpack_from(data)
    if signature != METADATA_TABLE_SIGNATURE:
        raise where.error("metadata table", f"signature {signature!r} is not 'metadata'")
    if count > METADATA_TABLE_MAX_ENTRIES:
        raise where.error("metadata table", f"EntryCount {count} exceeds {METADATA_TABLE_MAX_ENTRIES}", 10)
    entries = []
    for i in range(count):
        item_id, offset, length, flags = _METADATA_ENTRY.unpack_from(
            data, METADATA_TABLE_HEADER_SIZE + i * METADATA_TABLE_ENTRY_SIZE
        )
        entries.append(
            MetadataTableEntry(
                UUID(bytes_le=item_id),
                offset,
                length,
                is_user=bool(flags & METADATA_FLAG_IS_USER),
                is_virtual_disk=bool(flags & METADATA_FLAG_IS_VIRTUAL_DISK),
                is_required=bool(flags & METADATA_FLAG_IS_REQUIRED),
            )
        )
    return entries


# -- 2.6.2 Metadata items ------------------------------------------------------------------------


@dataclass(frozen=True)
class FileParameters:
    block_size: int
    leave_block_allocated: bool
    has_parent: bool


def encode_file_parameters(params: FileParameters) -> bytes:
    flags = (LEAVE_BLOCK_ALLOCATED if params.leave_block_allocated else 0) | (HAS_PARENT if params.has_parent else 0)
    return _FILE_PARAMETERS.pack(params.block_size, flags)


def parse_file_parameters(data: bytes, where: Where) -> FileParameters:
    if len(data) < _FILE_PARAMETERS.size:
        raise where.error("file parameters", f"item is {len(data)} bytes, expected 8")
    block_size, flags = _FILE_PARAMETERS.unpack_from(data)
    return FileParameters(block_size, bool(flags & LEAVE_BLOCK_ALLOCATED), bool(flags & HAS_PARENT))


def encode_u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def encode_u32(value: int) -> bytes:
    return struct.pack("<I", value)


def parse_uint(data: bytes, size: int, structure: str, where: Where) -> int:
    if len(data) < size:
        raise where.error(structure, f"item is {len(data)} bytes, expected {size}")
    return int.from_bytes(data[:size], "little")


def encode_parent_locator(locator_type: UUID, entries: dict[str, str]) -> bytes:
    """A parent locator item: header, key/value entries, then the UTF-16LE strings."""
    pairs = [(k.encode("utf-16-le"), v.encode("utf-16-le")) for k, v in entries.items()]
    head = bytearray(_LOCATOR_HEADER.pack(locator_type.bytes_le, 0, len(pairs)))
    strings = bytearray()
    cursor = PARENT_LOCATOR_HEADER_SIZE + PARENT_LOCATOR_ENTRY_SIZE * len(pairs)
    for key, value in pairs:
        key_at, value_at = cursor + len(strings), cursor + len(strings) + len(key)
        head += _LOCATOR_ENTRY.pack(key_at, value_at, len(key), len(value))
        strings += key + value
    return bytes(head + strings)


def parse_parent_locator(data: bytes, where: Where) -> tuple[UUID, dict[str, str]]:
    """The locator type and its key/value pairs."""
    structure = "parent locator"
    if len(data) < PARENT_LOCATOR_HEADER_SIZE:
        raise where.error(structure, f"item is {len(data)} bytes, shorter than its header")
    locator_type, _, count = _LOCATOR_HEADER.unpack_from(data)
    if PARENT_LOCATOR_HEADER_SIZE + count * PARENT_LOCATOR_ENTRY_SIZE > len(data):
        raise where.error(structure, f"KeyValueCount {count} overruns the item", 18)
    entries: dict[str, str] = {}
    for i in range(count):
        at = PARENT_LOCATOR_HEADER_SIZE + i * PARENT_LOCATOR_ENTRY_SIZE
        key_offset, value_offset, key_length, value_length = _LOCATOR_ENTRY.unpack_from(data, at)
        if (
            key_length == 0
            or value_length == 0
            or key_offset + key_length > len(data)
            or value_offset + value_length > len(data)
        ):
            raise where.error(structure, f"entry {i} points outside the item", at)
        try:
            key = data[key_offset : key_offset + key_length].decode("utf-16-le")
            value = data[value_offset : value_offset + value_length].decode("utf-16-le")
        except UnicodeDecodeError as e:
            raise where.error(structure, f"entry {i} is not UTF-16LE: {e}", at) from None
        entries[key] = value
    return UUID(bytes_le=locator_type), entries


# -- 2.5.1 BAT entries ---------------------------------------------------------------------------


def encode_bat_entry(state: int, file_offset: int) -> int:
    """A BAT entry as a 64-bit integer; `file_offset` must be a multiple of 1 MiB."""
    if file_offset & ((1 << BAT_FILE_OFFSET_SHIFT) - 1):
        raise ValueError(f"file offset {file_offset} is not a multiple of 1 MiB")
    return file_offset | state


def decode_bat_entry(value: int) -> tuple[int, int]:
    """(state, file offset in bytes) of a BAT entry."""
    return value & BAT_STATE_MASK, (value >> BAT_FILE_OFFSET_SHIFT) << BAT_FILE_OFFSET_SHIFT


def guid_string(guid: UUID) -> str:
    """A GUID as a parent locator holds it: "{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}", lower case
    (libvhdi, tested against Hyper-V's files, accepts only this form; we read any case)."""
    return "{" + str(guid) + "}"


def parse_guid_string(text: str) -> UUID | None:
    try:
        return UUID(text.strip().strip("{}"))
    except ValueError:
        return None


__all__ = [
    "ZERO_GUID",
    "FileParameters",
    "Header",
    "MetadataTableEntry",
    "RegionTableEntry",
    "Where",
    "decode_bat_entry",
    "encode_bat_entry",
    "encode_file_identifier",
    "encode_file_parameters",
    "encode_header",
    "encode_metadata_table",
    "encode_parent_locator",
    "encode_region_table",
    "encode_u32",
    "encode_u64",
    "guid_string",
    "parse_file_identifier",
    "parse_file_parameters",
    "parse_guid_string",
    "parse_header",
    "parse_metadata_table",
    "parse_parent_locator",
    "parse_region_table",
    "parse_uint",
]
