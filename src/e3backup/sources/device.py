"""Opening what is to be imaged: a block device or an image file, read with ``os.preadv``.

The size of a block device comes from ``ioctl(BLKGETSIZE64)`` and its logical sector size from
``BLKSSZGET`` (``stat`` says 0 bytes for a device); an image file has its ``stat`` size and a
512-byte sector. ``read_into`` fills caller-owned buffers so the hot path allocates nothing
(DESIGN: the allocation trap). The layout and bitmap parsers read through the small
``ByteSource`` protocol, so the plan is computed from the very handle that is then imaged.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import struct
import sys
import threading
from typing import Protocol, runtime_checkable

from ..platform.compat import READ_FLAGS, pread, preadv
from ..platform.windows.ioctl import DriveLayout, StructError
from ..platform.windows.rawdisk import RawDevice, drive_layout, is_device_path, open_raw
from ..platform.windows.win32 import Win32, kernel32

BLKGETSIZE64 = 0x80081272
BLKSSZGET = 0x1268
DEFAULT_SECTOR_SIZE = 512


@runtime_checkable
class ByteSource(Protocol):
    """Random read access to ``size`` bytes. ``read_at`` returns fewer bytes only at the end."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes: ...


@runtime_checkable
class BufferSource(ByteSource, Protocol):
    """A ``ByteSource`` that can also read straight into a caller's buffer (one copy)."""

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int: ...


class Device:
    """An open block device or image file. Thread-safe: ``preadv`` keeps no file position."""

    def __init__(self, path: str, fd: int, size: int, sector_size: int, is_block: bool) -> None:
        self.path = path
        self.fd = fd
        self._size = size
        self.sector_size = sector_size
        self.is_block_device = is_block
        self._direct_fd: int | None = None  # opened on the first uncached read; -1: not possible
        self._direct_lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int:
        """Read ``len(buf)`` bytes at ``offset`` into ``buf``; fewer only at end of file.

        ``OSError`` (EIO and friends) propagates: the policy lives in ``reader.py``.
        """
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view):
            n = preadv(self.fd, [view[done:]], offset + done)
            if n == 0:
                break
            done += n
        return done

    def read_uncached(self, offset: int, buf: bytearray | memoryview) -> int:
        """Like ``read_into`` but past the page cache (``O_DIRECT``), for locating bad sectors.

        A buffered read of a block device fails for a whole readahead window or folio around an
        unreadable sector (measured: 256 KiB for one bad 4 KiB on a loop device, sometimes from
        the folio's start before it), so sector-level recovery through the cache zero-fills good
        data. ``O_DIRECT`` reads exactly the sectors asked for. Falls back to ``read_into`` where
        it cannot be used (unaligned span, a file system without ``O_DIRECT``).
        """
        view = memoryview(buf).cast("B")
        sector = max(1, self.sector_size)
        fd = self._direct()
        if fd < 0 or offset % sector or len(view) % sector or not view:
            return self.read_into(offset, view)
        # O_DIRECT needs an aligned buffer: an anonymous mapping is page-aligned
        with mmap.mmap(-1, len(view)) as aligned:
            try:
                n = preadv(fd, [aligned], offset)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                return self.read_into(offset, view)
            view[:n] = aligned[:n]
        return n

    def _direct(self) -> int:
        with self._direct_lock:
            if self._direct_fd is None:
                self._direct_fd = _open_direct(self.path)
            return self._direct_fd

    def read_at(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        data = pread(self.fd, length, offset)  # one copy (a bytearray + bytes() made two)
        if 0 < len(data) < length:  # a short read before the end: go on
            parts = [data]
            done = len(data)
            while done < length and (more := pread(self.fd, length - done, offset + done)):
                parts.append(more)
                done += len(more)
            data = b"".join(parts)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with self._direct_lock:
            if self._direct_fd is not None and self._direct_fd >= 0:
                os.close(self._direct_fd)
            self._direct_fd = None

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "block device" if self.is_block_device else "image file"
        return f"Device({self.path!r}, {kind}, size={self._size}, sector={self.sector_size})"


def _open_direct(path: str) -> int:
    """``path`` opened past the page cache, or -1 where that is not possible (Windows devices are
    read unbuffered by ``platform.windows.rawdisk`` instead)."""
    if sys.platform == "win32":
        return -1
    else:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECT)
        except OSError:
            return -1


class RawDiskDevice(Device):
    """A Windows disk, volume or shadow copy, read through ``platform.windows.rawdisk``."""

    def __init__(self, raw: RawDevice) -> None:
        super().__init__(raw.path, -1, raw.size, raw.sector_size, True)
        self.raw = raw
        self._direct_fd = -1  # already unbuffered

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int:
        return self.raw.read_into(offset, buf)

    def read_uncached(self, offset: int, buf: bytearray | memoryview) -> int:
        return self.raw.read_into(offset, buf)

    def read_at(self, offset: int, length: int) -> bytes:
        return self.raw.read_at(offset, length)

    def os_layout(self) -> DriveLayout | None:
        """The partitions Windows reports (``IOCTL_DISK_GET_DRIVE_LAYOUT_EX``); None for a volume
        or when the disk does not answer."""
        if "PhysicalDrive" not in self.path:
            return None
        try:
            return drive_layout(self.raw.api, self.raw.handle, self.path)
        except (OSError, StructError):
            return None

    def close(self) -> None:
        self.raw.close()


def open_device(path: str | os.PathLike[str], api: Win32 | None = None) -> Device:
    """Open ``path`` read-only and learn its size and logical sector size. A Windows device path
    (``\\\\.\\PhysicalDrive0``, a shadow copy) opens through the ``Win32`` seam (``api``; the real
    one on Windows)."""
    p = os.fspath(path)
    if api is not None or (sys.platform == "win32" and is_device_path(p)):
        return RawDiskDevice(open_raw(api or kernel32(), p))
    fd = os.open(p, READ_FLAGS)
    try:
        st = os.fstat(fd)
        if sys.platform != "win32" and stat.S_ISBLK(st.st_mode):
            import fcntl  # here: the module must import on Windows

            size = struct.unpack("Q", fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8))[0]
            sector = struct.unpack("i", fcntl.ioctl(fd, BLKSSZGET, b"\0" * 4))[0]
            return Device(p, fd, size, sector, True)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{p}: neither a block device nor a regular file")
        return Device(p, fd, st.st_size, DEFAULT_SECTOR_SIZE, False)
    except BaseException:
        os.close(fd)
        raise


class Window:
    """``size`` bytes of ``source`` starting at ``start``: a partition seen on its own."""

    def __init__(self, source: ByteSource, start: int, size: int) -> None:
        self.source = source
        self.start = start
        self._size = max(0, min(size, source.size - start))

    @property
    def size(self) -> int:
        return self._size

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset >= self._size:
            return b""
        return self.source.read_at(self.start + offset, min(length, self._size - offset))


class CountingSource:
    """``source`` with the bytes read through it counted (what change tracking read)."""

    def __init__(self, source: BufferSource) -> None:
        self.source = source
        self.bytes_read = 0

    @property
    def size(self) -> int:
        return self.source.size

    def read_at(self, offset: int, length: int) -> bytes:
        data = self.source.read_at(offset, length)
        self.bytes_read += len(data)
        return data

    def read_into(self, offset: int, buf: bytearray | memoryview) -> int:
        n = self.source.read_into(offset, buf)
        self.bytes_read += n
        return n


class BytesSource:
    """An in-memory ``ByteSource`` (unit tests, already-read headers)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def read_at(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


__all__ = [
    "BufferSource", "ByteSource", "BytesSource", "CountingSource", "Device", "RawDiskDevice", "Window", "open_device",
]
