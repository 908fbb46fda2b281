"""The GUID partition table: primary header at LBA 1, backup header at the last LBA.

Each header (92 bytes, "EFI PART") carries a CRC32 of itself and of its entry array; an entry is
``entry_size`` bytes (128 usually): type GUID, unique GUID, first and last LBA (inclusive),
attributes and a UTF-16LE name. When the primary header or its entries fail their checks the
backup copy is used and the layout says so; when neither is valid the disk has no readable table.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

from e3backup.sources.device import ByteSource

SIGNATURE = b"EFI PART"
HEADER_MIN_SIZE = 92
MAX_ENTRIES = 1024
_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")


@dataclass(frozen=True)
class GptEntry:
    index: int
    type_guid: str
    guid: str
    first_lba: int
    last_lba: int
    attributes: int
    name: str


@dataclass(frozen=True)
class GptHeader:
    my_lba: int
    alternate_lba: int
    first_usable: int
    last_usable: int
    disk_guid: str
    entries_lba: int
    n_entries: int
    entry_size: int
    entries_bytes: int


@dataclass(frozen=True)
class GptTable:
    disk_guid: str
    entries: tuple[GptEntry, ...]
    primary: GptHeader | None
    backup: GptHeader | None

    @property
    def header(self) -> GptHeader:
        h = self.primary or self.backup
        assert h is not None
        return h


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw)).upper()


def _read_header(source: ByteSource, ss: int, lba: int) -> tuple[GptHeader, bytes] | None:
    """A header at ``lba`` whose own CRC and entries CRC check out, with its entry array."""
    raw = source.read_at(lba * ss, ss)
    if len(raw) < HEADER_MIN_SIZE or raw[:8] != SIGNATURE:
        return None
    (_, _rev, hsize, hcrc, _, my_lba, alt, first, last, dguid, elba, n, esize, ecrc) = _HEADER.unpack_from(
        raw
    )
    if not HEADER_MIN_SIZE <= hsize <= ss or my_lba != lba:
        return None
    zeroed = raw[:16] + b"\0\0\0\0" + raw[20:hsize]
    if zlib.crc32(zeroed) != hcrc:
        return None
    if esize < 128 or esize % 8 or not 0 < n <= MAX_ENTRIES:
        return None
    array = source.read_at(elba * ss, n * esize)
    if len(array) != n * esize or zlib.crc32(array) != ecrc:
        return None
    header = GptHeader(lba, alt, first, last, _guid(dguid), elba, n, esize, n * esize)
    return header, array


def _entries(array: bytes, esize: int) -> tuple[GptEntry, ...]:
    out = []
    for i in range(len(array) // esize):
        e = array[i * esize : (i + 1) * esize]
        if e[:16] == b"\0" * 16:
            continue
        first, last, attrs = struct.unpack_from("<QQQ", e, 32)
        name = e[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        out.append(GptEntry(i + 1, _guid(e[:16]), _guid(e[16:32]), first, last, attrs, name))
    return tuple(out)


def parse_gpt(source: ByteSource, sector_size: int) -> GptTable | None:
    """Both GPT copies of ``source`` as far as they are valid; None when neither is."""
    last_lba = source.size // sector_size - 1
    primary = _read_header(source, sector_size, 1)
    candidates = [last_lba]
    if primary and primary[0].alternate_lba != last_lba:
        candidates.insert(0, primary[0].alternate_lba)
    backup = None
    for lba in candidates:
        if 1 < lba <= last_lba:
            backup = _read_header(source, sector_size, lba)
            if backup:
                break
    chosen = primary or backup
    if chosen is None:
        return None
    header, array = chosen
    return GptTable(
        header.disk_guid,
        _entries(array, header.entry_size),
        primary[0] if primary else None,
        backup[0] if backup else None,
    )


def has_gpt_signature(source: ByteSource, sector_size: int) -> bool:
    """Whether either header position carries the GPT signature (valid or not)."""
    last = source.size // sector_size - 1
    return any(source.read_at(lba * sector_size, 8) == SIGNATURE for lba in (1, last) if lba > 0)


__all__ = ["GptEntry", "GptHeader", "GptTable", "has_gpt_signature", "parse_gpt"]
