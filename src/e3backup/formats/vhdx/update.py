"""Writing into an existing VHDX: what a running guest does to its disk (the simulated Hyper-V host).

`VhdxUpdater(path)` opens a dynamic or differencing file read-write. A write into a
`FULLY_PRESENT` block goes to its place in the file; a write anywhere else first gives the block
a place: its current virtual content (zeros, or the parent's data, or the sector-bitmap mix of a
`PARTIALLY_PRESENT` block) is laid out whole at the 1 MiB-aligned end of the file (or over the
partial block's own place), the write is applied to it, and the BAT entry becomes
`FULLY_PRESENT`. Only BAT entries change in the metadata, and a BAT has no checksum ([MS-VHDX]
2.5), so no log is needed. Before the first change the current header is superseded by one with
new FileWriteGuid and DataWriteGuid (2.2.2: "must be changed before the first modification of
user-visible data"), written over the older of the two headers with the next sequence number.

Fixed files are refused (their blocks are all present already: write them with any tool), and so
are writes into a file that is some other file's parent: its DataWriteGuid changes, which is
exactly what makes the child refuse it. The caller knows which files are leaves.
"""

from __future__ import annotations

import os
import struct
import threading
import uuid
from types import TracebackType

from e3backup.errors import InvalidVhdxError
from e3backup.formats.image import check_range
from e3backup.formats.vhdx.constants import (
    ALIGNMENT,
    BAT_ENTRY_SIZE,
    HEADER1_OFFSET,
    HEADER2_OFFSET,
    HEADER_SIZE,
    PAYLOAD_BLOCK_FULLY_PRESENT,
    PAYLOAD_BLOCK_PARTIALLY_PRESENT,
)
from e3backup.formats.vhdx.reader import VhdxReader
from e3backup.formats.vhdx.structures import Header, decode_bat_entry, encode_bat_entry, encode_header
from e3backup.platform.compat import O_BINARY, O_CLOEXEC, pwrite

_BAT_PACK = struct.Struct("<Q")


class VhdxUpdater(VhdxReader):
    """A VHDX opened for writing virtual bytes (and reading them back, through its parents)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        if self.fixed:
            self.close()
            raise InvalidVhdxError(self.path, "file parameters", 0, "a fixed VHDX is written in place by any tool")
        self._wfd = os.open(self.path, os.O_RDWR | O_BINARY | O_CLOEXEC)
        self._lock = threading.Lock()
        self._touched = False

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` at virtual ``offset``."""
        view = memoryview(data).cast("B")
        check_range(offset, len(view), self.virtual_size, f"{self.path}: write")
        with self._lock:
            self._new_write_guids()
            g = self.geometry
            pos = 0
            while pos < len(view):
                block, within = divmod(offset + pos, g.block_size)
                piece = view[pos : pos + g.block_size - within]
                self._write_block(block, within, piece)
                pos += len(piece)

    def _write_block(self, block: int, within: int, piece: memoryview) -> None:
        g = self.geometry
        index = g.payload_entry_index(block)
        state, file_offset = decode_bat_entry(self._bat[index])
        if state != PAYLOAD_BLOCK_FULLY_PRESENT:
            content = bytearray(self.read_at(block * g.block_size, g.block_length(block)))
            content[within : within + len(piece)] = piece
            if state != PAYLOAD_BLOCK_PARTIALLY_PRESENT:  # no place in the file yet: append one
                file_offset = -(-os.fstat(self._wfd).st_size // ALIGNMENT) * ALIGNMENT
            _pwrite_all(self._wfd, bytes(content), file_offset)
            os.ftruncate(self._wfd, max(os.fstat(self._wfd).st_size, file_offset + g.block_size))
            self._bat[index] = encode_bat_entry(PAYLOAD_BLOCK_FULLY_PRESENT, file_offset)
            _pwrite_all(self._wfd, _BAT_PACK.pack(self._bat[index]), self.bat_offset + index * BAT_ENTRY_SIZE)
            return
        _pwrite_all(self._wfd, bytes(piece), file_offset + within)

    def _new_write_guids(self) -> None:
        if self._touched:
            return
        h = self.header
        new = Header(h.sequence_number + 1, uuid.uuid4(), uuid.uuid4(), h.log_guid, h.log_version, h.version,
                     h.log_length, h.log_offset)
        # the older header slot: the current one stays valid until the new one is complete
        older = HEADER2_OFFSET if self._header_slot() == HEADER1_OFFSET else HEADER1_OFFSET
        _pwrite_all(self._wfd, encode_header(new), older)
        os.fsync(self._wfd)
        self.header = new
        self._touched = True

    def _header_slot(self) -> int:
        from e3backup.formats.vhdx.structures import Where, parse_header

        try:
            first = parse_header(self._pread(HEADER1_OFFSET, HEADER_SIZE), Where(self.path, HEADER1_OFFSET))
        except InvalidVhdxError:
            return HEADER2_OFFSET
        return HEADER1_OFFSET if first.sequence_number == self.header.sequence_number else HEADER2_OFFSET

    def flush(self) -> None:
        os.fsync(self._wfd)

    def close(self) -> None:
        wfd, self._wfd = getattr(self, "_wfd", -1), -1
        if wfd >= 0:
            os.fsync(wfd)
            os.close(wfd)
        super().close()

    def __enter__(self) -> VhdxUpdater:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


__all__ = ["VhdxUpdater"]
