"""Reads the virtual disk inside a VHDX file: dynamic, fixed and differencing (a parent chain).

Opening parses the header section (the current of the two headers, the region table), the
metadata region and the whole BAT, and opens the parent of a differencing file. A file whose
current header has a non-zero LogGuid has metadata updates in its log still to be replayed: we do
not replay logs, we refuse such files (Hyper-V or `qemu-img check -r all` replays them).

Reading a payload block, by its BAT state ([MS-VHDX] 2.5.1.1):

    FULLY_PRESENT      from the file (past the end of file: zeros)
    PARTIALLY_PRESENT  differencing only: per sector, the sector bitmap says child (1) or parent (0)
    NOT_PRESENT        zeros; in a differencing file, the parent's data
    UNDEFINED          as NOT_PRESENT
    ZERO, UNMAPPED     zeros
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Iterator
from types import TracebackType
from uuid import UUID

from e3backup.errors import InvalidVhdxError, ParentNotFoundError
from e3backup.formats.image import Extent, check_range, normalize_extents
from e3backup.formats.vhdx.constants import (
    BAT_ENTRY_SIZE,
    BAT_REGION_GUID,
    FILE_PARAMETERS_GUID,
    HEADER1_OFFSET,
    HEADER2_OFFSET,
    HEADER_SECTION_SIZE,
    HEADER_SIZE,
    HEADER_VERSION,
    LOGICAL_SECTOR_SIZE_GUID,
    METADATA_REGION_GUID,
    METADATA_TABLE_SIZE,
    PAGE_83_DATA_GUID,
    PARENT_LOCATOR_GUID,
    PAYLOAD_BLOCK_FULLY_PRESENT,
    PAYLOAD_BLOCK_NOT_PRESENT,
    PAYLOAD_BLOCK_PARTIALLY_PRESENT,
    PAYLOAD_BLOCK_STATES,
    PAYLOAD_BLOCK_UNDEFINED,
    PHYSICAL_SECTOR_SIZE_GUID,
    REGION_TABLE1_OFFSET,
    REGION_TABLE2_OFFSET,
    REGION_TABLE_SIZE,
    SB_BLOCK_PRESENT,
    SECTOR_SIZES,
    VHDX_PARENT_LOCATOR_TYPE_GUID,
    VIRTUAL_DISK_SIZE_GUID,
)
from e3backup.formats.vhdx.geometry import Geometry, geometry_problem
from e3backup.formats.vhdx.parent import linkage_guids, parent_candidates
from e3backup.formats.vhdx.structures import (
    ZERO_GUID,
    Header,
    RegionTableEntry,
    Where,
    decode_bat_entry,
    parse_file_identifier,
    parse_file_parameters,
    parse_header,
    parse_metadata_table,
    parse_parent_locator,
    parse_region_table,
    parse_uint,
)

from ...platform.compat import READ_FLAGS, pread, preadv

_KNOWN_METADATA = {
    FILE_PARAMETERS_GUID,
    VIRTUAL_DISK_SIZE_GUID,
    PAGE_83_DATA_GUID,
    LOGICAL_SECTOR_SIZE_GUID,
    PHYSICAL_SECTOR_SIZE_GUID,
    PARENT_LOCATOR_GUID,
}
_FROM_PARENT = (PAYLOAD_BLOCK_NOT_PRESENT, PAYLOAD_BLOCK_UNDEFINED)
MAX_CHAIN_DEPTH = 64


def bit_runs(bits: bytes, first: int, count: int) -> Iterator[tuple[int, int, int]]:
    """(start, length, bit) runs over `count` bits from bit `first` (bit 0 = LSB of byte 0)."""
    value = int.from_bytes(bits, "little") >> first
    pos = 0
    while pos < count:
        bit = value & 1
        run = ((value ^ (value + 1)) >> 1).bit_length() if bit else (value & -value).bit_length() - 1
        run = count - pos if run < 0 else min(run, count - pos)
        yield pos, run, bit
        value >>= run
        pos += run


class VhdxReader:
    """`VhdxReader(path)`: `virtual_size`, `read_at`/`read_into`, `allocated_extents()`."""

    def __init__(self, path: str | os.PathLike[str], parent_path: str | None = None, _depth: int = 0) -> None:
        self.path = os.fspath(path)
        self.parent: VhdxReader | None = None
        self._fd = os.open(self.path, READ_FLAGS)
        try:
            self._open(parent_path, _depth)
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------------

    def _pread(self, offset: int, length: int) -> bytes:
        data = pread(self._fd, length, offset)
        return data + bytes(length - len(data)) if len(data) < length else data

    def _error(self, structure: str, offset: int, reason: str) -> InvalidVhdxError:
        return InvalidVhdxError(self.path, structure, offset, reason)

    def _open(self, parent_path: str | None, depth: int) -> None:
        section = self._pread(0, HEADER_SECTION_SIZE)
        self.creator = parse_file_identifier(section, Where(self.path, 0))
        self.header = self._current_header(section)
        if self.header.log_guid != ZERO_GUID:
            raise self._error(
                "header",
                HEADER1_OFFSET,
                f"LogGuid {self.header.log_guid}: the file has a log to replay; open it with Hyper-V or qemu-img first",
            )
        regions = self._region_table(section)
        bat_region, metadata_region = regions[BAT_REGION_GUID], regions[METADATA_REGION_GUID]
        self.bat_offset = bat_region.file_offset  # where the BAT sits (the in-place updater writes there)
        self._read_metadata(metadata_region)
        self.geometry = Geometry(self.virtual_size, self.block_size, self.logical_sector_size, self.has_parent)
        self._read_bat(bat_region)
        if self.has_parent:
            self._open_parent(parent_path, depth)

    def _current_header(self, section: bytes) -> Header:
        headers: list[Header] = []
        problems: list[str] = []
        for offset in (HEADER1_OFFSET, HEADER2_OFFSET):
            try:
                header = parse_header(section[offset : offset + HEADER_SIZE], Where(self.path, offset))
            except InvalidVhdxError as e:
                problems.append(e.reason)
                continue
            if header.version != HEADER_VERSION:
                problems.append(f"Version {header.version} is not {HEADER_VERSION}")
                continue
            headers.append(header)
        if not headers:
            raise self._error("header", HEADER1_OFFSET, "no valid header: " + "; ".join(problems))
        first, *rest = headers
        if rest and rest[0].sequence_number == first.sequence_number and rest[0] != first:
            raise self._error("header", HEADER2_OFFSET, "two different headers with one SequenceNumber")
        return max(headers, key=lambda h: h.sequence_number)

    def _region_table(self, section: bytes) -> dict[UUID, RegionTableEntry]:
        try:
            entries = parse_region_table(section[REGION_TABLE1_OFFSET:], Where(self.path, REGION_TABLE1_OFFSET))
        except InvalidVhdxError:
            entries = parse_region_table(
                section[REGION_TABLE2_OFFSET : REGION_TABLE2_OFFSET + REGION_TABLE_SIZE],
                Where(self.path, REGION_TABLE2_OFFSET),
            )
        found: dict[UUID, RegionTableEntry] = {}
        for entry in entries:
            if entry.guid in found:
                raise self._error("region table", REGION_TABLE1_OFFSET, f"region {entry.guid} twice")
            if entry.guid not in (BAT_REGION_GUID, METADATA_REGION_GUID) and entry.required:
                raise self._error("region table", REGION_TABLE1_OFFSET, f"unknown required region {entry.guid}")
            if entry.file_offset < HEADER_SECTION_SIZE:
                raise self._error("region table", REGION_TABLE1_OFFSET, f"region {entry.guid} inside the header")
            found[entry.guid] = entry
        for guid, name in ((BAT_REGION_GUID, "BAT"), (METADATA_REGION_GUID, "metadata")):
            if guid not in found:
                raise self._error("region table", REGION_TABLE1_OFFSET, f"no {name} region")
        return found

    def _read_metadata(self, region: RegionTableEntry) -> None:
        base = region.file_offset
        table = self._pread(base, METADATA_TABLE_SIZE)
        items: dict[UUID, bytes] = {}
        for entry in parse_metadata_table(table, Where(self.path, base)):
            if entry.item_id not in _KNOWN_METADATA:
                if entry.is_required:
                    raise self._error("metadata table", base, f"unknown required item {entry.item_id}")
                continue
            if entry.item_id in items:
                raise self._error("metadata table", base, f"item {entry.item_id} twice")
            if entry.offset + entry.length > region.length:
                raise self._error("metadata table", base, f"item {entry.item_id} overruns the region")
            items[entry.item_id] = self._pread(base + entry.offset, entry.length)

        def item(guid: UUID, name: str) -> bytes:
            if guid not in items:
                raise self._error("metadata table", base, f"required item {name} missing")
            return items[guid]

        params = parse_file_parameters(item(FILE_PARAMETERS_GUID, "file parameters"), Where(self.path, base))
        self.block_size = params.block_size
        self.fixed = params.leave_block_allocated
        self.has_parent = params.has_parent
        where = Where(self.path, base)
        self.virtual_size = parse_uint(item(VIRTUAL_DISK_SIZE_GUID, "virtual disk size"), 8, "virtual disk size", where)
        self.logical_sector_size = parse_uint(
            item(LOGICAL_SECTOR_SIZE_GUID, "logical sector size"), 4, "logical sector size", where
        )
        self.physical_sector_size = parse_uint(
            item(PHYSICAL_SECTOR_SIZE_GUID, "physical sector size"), 4, "physical sector size", where
        )
        page83 = items.get(PAGE_83_DATA_GUID, b"")
        self.page_83 = UUID(bytes_le=page83[:16]) if len(page83) >= 16 else None
        problem = geometry_problem(self.virtual_size, self.block_size, self.logical_sector_size)
        if problem is None and self.physical_sector_size not in SECTOR_SIZES:
            problem = f"physical sector size {self.physical_sector_size} is not 512 or 4096"
        if problem:
            raise self._error("metadata", base, problem)
        self.parent_locator: dict[str, str] = {}
        if self.has_parent:
            locator_type, self.parent_locator = parse_parent_locator(item(PARENT_LOCATOR_GUID, "parent locator"), where)
            if locator_type != VHDX_PARENT_LOCATOR_TYPE_GUID:
                raise self._error("parent locator", base, f"locator type {locator_type} is not VHDX")

    def _read_bat(self, region: RegionTableEntry) -> None:
        g = self.geometry
        needed = g.bat_entries * BAT_ENTRY_SIZE
        if region.length < needed:
            raise self._error(
                "BAT", region.file_offset, f"{region.length} bytes, {g.bat_entries} entries need {needed}"
            )
        self._bat = array("Q")
        self._bat.frombytes(self._pread(region.file_offset, needed))
        if sys.byteorder == "big":
            self._bat.byteswap()
        for block in range(g.payload_blocks):
            index = g.payload_entry_index(block)
            state, offset = decode_bat_entry(self._bat[index])
            if state not in PAYLOAD_BLOCK_STATES:
                raise self._error("BAT", region.file_offset + index * 8, f"block {block}: unknown state {state}")
            if state == PAYLOAD_BLOCK_PARTIALLY_PRESENT and not self.has_parent:
                raise self._error(
                    "BAT", region.file_offset + index * 8, f"block {block} partially present without parent"
                )
            if state in (PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_PARTIALLY_PRESENT) and offset < HEADER_SECTION_SIZE:
                raise self._error("BAT", region.file_offset + index * 8, f"block {block} at file offset {offset}")

    def _open_parent(self, parent_path: str | None, depth: int) -> None:
        if depth >= MAX_CHAIN_DEPTH:
            raise self._error("parent locator", 0, f"parent chain deeper than {MAX_CHAIN_DEPTH}")
        candidates = [parent_path] if parent_path else parent_candidates(self.path, self.parent_locator)
        existing = [c for c in candidates if os.path.isfile(c)]
        if not existing:
            raise ParentNotFoundError(
                f"VHDX {self.path}: parent not found; locator {self.parent_locator}, tried {candidates}"
            )
        self.parent = VhdxReader(existing[0], _depth=depth + 1)
        expected = linkage_guids(self.parent_locator)
        if self.parent.header.data_write_guid not in expected:
            raise self._error(
                "parent locator",
                0,
                f"parent {existing[0]} has DataWriteGuid {self.parent.header.data_write_guid}, "
                f"parent_linkage expects {', '.join(map(str, expected)) or 'nothing valid'}: "
                "the parent changed since this differencing disk was made",
            )
        if self.parent.logical_sector_size != self.logical_sector_size:
            raise self._error("parent locator", 0, f"parent {existing[0]} has another logical sector size")

    # -- reading ---------------------------------------------------------------------------------

    def _file_into(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            n = preadv(self._fd, [view[done:]], offset + done)
            if n == 0:  # past the end of the file: the rest of the block was never written
                view[done:] = bytes(len(view) - done)
                return
            done += n

    def _parent_into(self, view: memoryview, offset: int) -> None:
        if self.parent is None:
            view[:] = bytes(len(view))
            return
        inside = max(0, min(len(view), self.parent.virtual_size - offset))
        if inside:
            self.parent.read_into(offset, view[:inside])
        view[inside:] = bytes(len(view) - inside)

    def read_into(self, offset: int, buf: bytearray | memoryview) -> None:
        view = memoryview(buf).cast("B")
        check_range(offset, len(view), self.virtual_size, f"{self.path}: read")
        g = self.geometry
        pos = 0
        while pos < len(view):
            block, within = divmod(offset + pos, g.block_size)
            piece = view[pos : pos + g.block_size - within]
            state, file_offset = decode_bat_entry(self._bat[g.payload_entry_index(block)])
            if state == PAYLOAD_BLOCK_FULLY_PRESENT:
                self._file_into(piece, file_offset + within)
            elif state == PAYLOAD_BLOCK_PARTIALLY_PRESENT:
                self._partial_into(piece, block, within, file_offset)
            elif state in _FROM_PARENT and self.parent is not None:
                self._parent_into(piece, offset + pos)
            else:
                piece[:] = bytes(len(piece))
            pos += len(piece)

    def _partial_into(self, piece: memoryview, block: int, within: int, file_offset: int) -> None:
        g = self.geometry
        chunk, index_in_chunk = divmod(block, g.chunk_ratio)
        bat_index = g.sector_bitmap_entry_index(chunk)
        sb_state, sb_offset = decode_bat_entry(self._bat[bat_index])
        if sb_state != SB_BLOCK_PRESENT:
            raise self._error("BAT", bat_index * 8, f"block {block} partially present, its sector bitmap absent")
        sector = g.logical_sector_size
        first = within // sector
        last = (within + len(piece) - 1) // sector
        bit0 = index_in_chunk * g.sectors_per_block + first
        bits = self._pread(sb_offset + bit0 // 8, (bit0 + last - first) // 8 - bit0 // 8 + 1)
        for start, count, present in bit_runs(bits, bit0 % 8, last - first + 1):
            lo = max((first + start) * sector, within) - within
            hi = min((first + start + count) * sector, within + len(piece)) - within
            if present:
                self._file_into(piece[lo:hi], file_offset + within + lo)
            else:
                self._parent_into(piece[lo:hi], block * g.block_size + within + lo)

    def read_at(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.read_into(offset, buf)
        return bytes(buf)

    def block_state(self, block: int) -> int:
        """The BAT state of payload block `block`."""
        return decode_bat_entry(self._bat[self.geometry.payload_entry_index(block)])[0]

    def present_extents(self) -> Iterator[Extent]:
        """Blocks whose data is (at least partly) in this file, merged, ascending."""
        g = self.geometry
        start = end = -1
        for block in range(g.payload_blocks):
            if self.block_state(block) in (PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_PARTIALLY_PRESENT):
                lo = block * g.block_size
                if lo != end:
                    if end > start:
                        yield start, end - start
                    start = lo
                end = lo + g.block_length(block)
        if end > start:
            yield start, end - start

    def allocated_extents(self) -> Iterator[Extent]:
        """Ranges that may hold non-zero data, through the whole parent chain."""
        extents = list(self.present_extents())
        if self.parent is not None:
            extents += [(o, n) for o, n in self.parent.allocated_extents() if o < self.virtual_size]
        return iter(normalize_extents(extents, self.virtual_size))

    def close(self) -> None:
        if self.parent is not None:
            self.parent.close()
            self.parent = None
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> VhdxReader:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


__all__ = ["VhdxReader", "bit_runs"]
