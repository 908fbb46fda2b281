"""The master boot record: four primary entries, the protective 0xEE entry, extended chains.

An MBR is sector 0 ending in 0x55AA with four 16-byte entries at byte 446. Logical partitions
live in a chain of extended boot records (EBRs) inside the extended partition: each EBR's first
entry is a logical partition (relative to that EBR), its second points to the next EBR (relative
to the start of the extended partition). File-system boot sectors (NTFS, FAT) also end in 0x55AA,
so entries are validated before the sector is believed to be an MBR.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from e3backup.sources.device import ByteSource
from e3backup.sources.layout.guids import EXTENDED_MBR_TYPES

ENTRY_OFFSET = 446
ENTRY_SIZE = 16
SIGNATURE = b"\x55\xaa"
PROTECTIVE = 0xEE
MAX_LOGICAL = 128
_FS_OEM_IDS = (b"NTFS    ", b"EXFAT   ", b"MSDOS", b"MSWIN", b"mkfs.fat")


@dataclass(frozen=True)
class MbrEntry:
    """One partition: ``index`` 1-4 for primaries, 5 and up for logicals (Linux numbering)."""

    index: int
    kind: int
    start_lba: int
    sectors: int
    bootable: bool


@dataclass(frozen=True)
class MbrTable:
    disk_signature: int
    entries: tuple[MbrEntry, ...]
    ebr_lbas: tuple[int, ...]

    @property
    def protective(self) -> bool:
        return any(e.kind == PROTECTIVE for e in self.entries)

    def data_entries(self) -> tuple[MbrEntry, ...]:
        """Entries that hold data: not the extended container, not the protective entry."""
        return tuple(e for e in self.entries if e.kind not in EXTENDED_MBR_TYPES | {PROTECTIVE})


def _entries(sector: bytes) -> list[tuple[int, int, int, int, int]] | None:
    """(slot, status, kind, start, sectors) of used slots, or None if the slots look invalid."""
    out = []
    for slot in range(4):
        raw = sector[ENTRY_OFFSET + slot * ENTRY_SIZE : ENTRY_OFFSET + (slot + 1) * ENTRY_SIZE]
        status, kind, start, count = raw[0], raw[4], *struct.unpack_from("<II", raw, 8)
        if status not in (0x00, 0x80):
            return None
        if kind != 0 and count:
            out.append((slot, status, kind, start, count))
    return out


def parse_mbr(source: ByteSource, sector_size: int) -> MbrTable | None:
    """The MBR of ``source``, or None when sector 0 is not a plausible MBR."""
    sector = source.read_at(0, 512)
    if len(sector) < 512 or sector[510:512] != SIGNATURE:
        return None
    if any(sector[3 : 3 + len(oem)] == oem for oem in _FS_OEM_IDS):
        return None
    slots = _entries(sector)
    if slots is None or not slots:
        return None
    disk_sectors = source.size // sector_size
    entries: list[MbrEntry] = []
    ebrs: list[int] = []
    for slot, status, kind, start, count in slots:
        if kind != PROTECTIVE and start + count > disk_sectors:
            return None
        entries.append(MbrEntry(slot + 1, kind, start, count, status == 0x80))
        if kind in EXTENDED_MBR_TYPES:
            entries.extend(_logicals(source, sector_size, start, count, ebrs))
    return MbrTable(struct.unpack_from("<I", sector, 440)[0], tuple(entries), tuple(ebrs))


def _logicals(
    source: ByteSource, sector_size: int, ext_start: int, ext_sectors: int, ebrs: list[int]
) -> list[MbrEntry]:
    out: list[MbrEntry] = []
    ebr = ext_start
    while len(out) < MAX_LOGICAL and ebr not in ebrs and ext_start <= ebr < ext_start + ext_sectors:
        sector = source.read_at(ebr * sector_size, 512)
        if len(sector) < 512 or sector[510:512] != SIGNATURE:
            break
        ebrs.append(ebr)
        slots = _entries(sector) or []
        first = [s for s in slots if s[0] == 0 and s[2] not in EXTENDED_MBR_TYPES]
        for _slot, status, kind, start, count in first:
            out.append(MbrEntry(5 + len(out), kind, ebr + start, count, status == 0x80))
        nxt = [s for s in slots if s[0] == 1 and s[2] in EXTENDED_MBR_TYPES]
        if not nxt:
            break
        ebr = ext_start + nxt[0][3]
    return out


__all__ = ["MbrEntry", "MbrTable", "parse_mbr"]
