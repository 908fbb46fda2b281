"""A physical disk (``\\\\.\\PhysicalDriveN``), a volume or a shadow copy
(``\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopyN``) read through the ``Win32`` seam.

The handle is unbuffered, so every read is sector-aligned in offset and length; an unaligned
request (a layout parser reading a few bytes) reads the covering sectors and copies. The size
comes from ``IOCTL_DISK_GET_LENGTH_INFO``, the logical sector size from
``IOCTL_DISK_GET_DRIVE_GEOMETRY_EX`` (512 when a volume does not answer), and volume handles ask
for ``FSCTL_ALLOW_EXTENDED_DASD_IO`` so the NTFS backup boot sector past the file system's end can
be read.

The seeds' tail rule: a read failing with ``ERROR_SECTOR_NOT_FOUND`` that reaches into the last
``TAIL_SECTORS`` sectors is the end of the device (some bridges report a length they cannot
read): it is retried sector by sector, the sectors from the first missing one on read as zeros,
without a warning (``tail_zeroed`` counts them). Anywhere else the error is a ``Win32Error``, an
``OSError`` the shared read policy handles: zero-filled with ``DISK_IMAGE_READ_RECOVERED`` in
best-effort mode, ``DISK_IMAGE_FAILED`` in strict mode (``sources.reader``).
"""

from __future__ import annotations

import threading

from .ioctl import (
    FSCTL_ALLOW_EXTENDED_DASD_IO,
    IOCTL_DISK_GET_DRIVE_GEOMETRY_EX,
    IOCTL_DISK_GET_DRIVE_LAYOUT_EX,
    IOCTL_DISK_GET_LENGTH_INFO,
    DriveLayout,
    parse_drive_layout,
    parse_length,
    parse_sector_size,
)
from .win32 import ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA, ERROR_SECTOR_NOT_FOUND, Win32, Win32Error

TAIL_SECTORS = 64
DEFAULT_SECTOR_SIZE = 512
LAYOUT_BUFFER = 48 + 128 * 144  # room for 128 partitions: a GPT's usual maximum
MAX_LAYOUT_BUFFER = 1 << 20


def is_device_path(path: str) -> bool:
    """A Win32 device namespace path (``\\\\.\\`` or ``\\\\?\\``), not a file."""
    return path.startswith(("\\\\.\\", "\\\\?\\"))


class RawDevice:
    """An open disk, volume or shadow copy. Thread-safe (reads carry their offset)."""

    is_block_device = True

    def __init__(self, api: Win32, path: str, handle: int, size: int, sector_size: int) -> None:
        self.api = api
        self.path = path
        self.handle = handle
        self._size = size
        self.sector_size = sector_size
        self.tail_start = max(0, size - TAIL_SECTORS * sector_size)
        self._lock = threading.Lock()
        self.tail_zeroed = 0

    @property
    def size(self) -> int:
        return self._size

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int:
        """Fill ``buf`` from ``offset``; fewer bytes only past the device's end."""
        view = memoryview(buf).cast("B")
        length = max(0, min(len(view), self._size - offset))
        if length == 0:
            return 0
        ss = self.sector_size
        start = offset - offset % ss
        end = min(-(-(offset + length) // ss) * ss, -(-self._size // ss) * ss)
        if start == offset and end == offset + length:
            self._read_aligned(offset, view[:length])
            return length
        tmp = bytearray(end - start)
        self._read_aligned(start, memoryview(tmp))
        view[:length] = tmp[offset - start : offset - start + length]
        return length

    def read_at(self, offset: int, length: int) -> bytes:
        buf = bytearray(max(0, min(length, self._size - offset)))
        n = self.read_into(offset, buf)
        return bytes(buf[:n])

    def _read_aligned(self, offset: int, view: memoryview) -> None:
        done = 0
        while done < len(view):
            error, n = self.api.read(self.handle, offset + done, view[done:])
            if error == 0 and n > 0:
                done += n
                continue
            if error == 0:  # EOF before the reported length: the end is here
                self._zero_tail(offset + done, view[done:])
                return
            if error == ERROR_SECTOR_NOT_FOUND and offset + len(view) > self.tail_start:
                self._read_tail(offset + done, view[done:])
                return
            raise Win32Error("ReadFile", error, f"{self.path} at offset {offset + done}")

    def _read_tail(self, offset: int, view: memoryview) -> None:
        """Sector by sector: the first missing sector inside the tail ends the device."""
        ss = self.sector_size
        for pos in range(0, len(view), ss):
            error, n = self.api.read(self.handle, offset + pos, view[pos : pos + ss])
            if error == 0 and n == min(ss, len(view) - pos):
                continue
            if (error == ERROR_SECTOR_NOT_FOUND or error == 0) and offset + pos >= self.tail_start:
                self._zero_tail(offset + pos, view[pos:])
                return
            raise Win32Error("ReadFile", error or ERROR_SECTOR_NOT_FOUND, f"{self.path} at offset {offset + pos}")

    def _zero_tail(self, offset: int, view: memoryview) -> None:
        view[:] = bytes(len(view))
        with self._lock:
            self.tail_zeroed += len(view)

    def close(self) -> None:
        if self.handle >= 0:
            self.api.close(self.handle)
            self.handle = -1

    def __enter__(self) -> RawDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RawDevice({self.path!r}, size={self._size}, sector={self.sector_size})"


def open_raw(api: Win32, path: str) -> RawDevice:
    """Open a disk, volume or shadow copy for reading and learn its size and sector size."""
    handle = api.open_device(path)
    try:
        error, out = api.device_io_control(handle, IOCTL_DISK_GET_LENGTH_INFO, b"", 8)
        if error:
            raise Win32Error("IOCTL_DISK_GET_LENGTH_INFO", error, path)
        size = parse_length(out)
        error, out = api.device_io_control(handle, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, b"", 256)
        sector = parse_sector_size(out) if error == 0 else DEFAULT_SECTOR_SIZE
        if "PhysicalDrive" not in path:
            api.device_io_control(handle, FSCTL_ALLOW_EXTENDED_DASD_IO, b"", 0)  # best effort
        return RawDevice(api, path, handle, size, sector or DEFAULT_SECTOR_SIZE)
    except BaseException:
        api.close(handle)
        raise


def drive_layout(api: Win32, handle: int, path: str = "") -> DriveLayout:
    """``IOCTL_DISK_GET_DRIVE_LAYOUT_EX``, doubling the buffer while the disk says it is too small."""
    size = LAYOUT_BUFFER
    while True:
        error, out = api.device_io_control(handle, IOCTL_DISK_GET_DRIVE_LAYOUT_EX, b"", size)
        if error == 0:
            return parse_drive_layout(out)
        if error not in (ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA) or size >= MAX_LAYOUT_BUFFER:
            raise Win32Error("IOCTL_DISK_GET_DRIVE_LAYOUT_EX", error, path)
        size *= 2


__all__ = ["TAIL_SECTORS", "RawDevice", "drive_layout", "is_device_path", "open_raw"]
