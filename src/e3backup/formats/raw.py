"""Raw disk images: a file (or block device) whose byte N is the virtual disk's byte N.

A raw file target is sparse: it is created empty, sized with ftruncate, and only non-zero data is
written, so everything else is a hole that reads as zero. A block device keeps whatever it held,
so there every byte passed to `write_at` is written, zeros included, and the restore zeroes the
ranges it knows are zero with `zero_range` (plain writes, BLKZEROOUT, or BLKDISCARD when the
caller knows the device reads discarded sectors as zero).
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Literal

from e3backup.errors import FormatError
from e3backup.formats.direct import DirectWriter, Preallocation
from e3backup.formats.image import Buffer, Extent, check_range

from ..platform.compat import O_BINARY, O_CLOEXEC, READ_FLAGS, preadv

BLKDISCARD = 0x1277  # _IO(0x12, 119)
BLKZEROOUT = 0x127F  # _IO(0x12, 127)
BLKGETSIZE64 = 0x80081272  # _IOR(0x12, 114, u64)
ZERO_WRITE_SIZE = 4 * 1024 * 1024
ZeroHow = Literal["write", "zeroout", "discard"]


def _size_of(fd: int) -> int:
    st = os.fstat(fd)
    if sys.platform != "win32" and stat.S_ISBLK(st.st_mode):
        import fcntl  # here: block devices are Linux-only, and the module must import on Windows

        buf = fcntl.ioctl(fd, BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("<Q", buf)[0])
    return st.st_size


class RawWriter:
    """`RawWriter(path, virtual_size, allocated)`: sparse file, or an existing block device of enough size.

    A new file gets the ``allocated`` extents (the ranges that will be written) allocated up front
    and the zero runs found inside them punched out at ``close`` (`Preallocation`). `reopen` gives
    one more handle on the same target, as each restore worker has its own; close those first.
    With ``create=False`` an existing file is opened as it is (no truncation); ``direct=False``
    writes through the page cache.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        virtual_size: int,
        allocated: Iterable[Extent] | None = None,
        *,
        create: bool = True,
        direct: bool = True,
        _prealloc: Preallocation | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._virtual_size = virtual_size
        is_device = os.path.exists(self.path) and stat.S_ISBLK(os.stat(self.path).st_mode)
        flags = os.O_RDWR | O_BINARY | O_CLOEXEC | (os.O_CREAT | os.O_TRUNC if create and not is_device else 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        self.is_block_device = is_device
        self._direct = direct
        self._out = DirectWriter(self.path, self._fd, direct=direct)
        self._prealloc = _prealloc
        self._owns_prealloc = False
        try:
            if is_device:
                size = _size_of(self._fd)
                if size < virtual_size:
                    raise FormatError(f"{self.path}: device has {size} bytes, the image needs {virtual_size}")
            elif create:
                os.ftruncate(self._fd, virtual_size)
                if allocated is not None and self._out.direct:
                    self._prealloc = Preallocation(self._fd, allocated)
                    self._owns_prealloc = True
        except BaseException:
            self.close()
            raise

    def reopen(self) -> RawWriter:
        """One more handle (its own descriptor) on this target, sharing its preallocation."""
        self._fd_or_raise()
        return RawWriter(self.path, self._virtual_size, create=False, direct=self._direct, _prealloc=self._prealloc)

    @property
    def virtual_size(self) -> int:
        return self._virtual_size

    def _fd_or_raise(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: raw image already closed")
        return self._fd

    def write_at(self, offset: int, data: Buffer) -> None:
        self._fd_or_raise()
        view = memoryview(data).cast("B")
        check_range(offset, len(view), self._virtual_size, f"{self.path}: write_at")
        if self.is_block_device:
            self._out.write(view, offset)
        else:
            self._out.write_nonzero(view, offset, self._prealloc)

    def zero_range(self, offset: int, length: int, how: ZeroHow = "write") -> None:
        """Make [offset, offset+length) read as zero: a no-op on a sparse file (it is a hole)."""
        fd = self._fd_or_raise()
        check_range(offset, length, self._virtual_size, f"{self.path}: zero_range")
        if not self.is_block_device or length == 0:
            return
        if how in ("zeroout", "discard") and sys.platform != "win32":
            request = BLKZEROOUT if how == "zeroout" else BLKDISCARD
            try:
                import fcntl

                fcntl.ioctl(fd, request, struct.pack("QQ", offset, length))
                return
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL) or how == "discard":
                    raise FormatError(f"{self.path}: {how} of [{offset}, {offset + length}): {e}") from e
        zeros = memoryview(bytes(min(length, ZERO_WRITE_SIZE)))
        end = offset + length
        while offset < end:
            n = min(len(zeros), end - offset)
            self._out.write(zeros[:n], offset)
            offset += n

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._out.close()
            try:
                if self._owns_prealloc and self._prealloc is not None:
                    self._prealloc.finish()
                os.fsync(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> RawWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class RawReader:
    """`RawReader(path)`: reads a raw file or block device; past its end reads zeros."""

    def __init__(self, path: str | os.PathLike[str], virtual_size: int | None = None) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, READ_FLAGS)
        self._file_size = _size_of(self._fd)
        self._virtual_size = self._file_size if virtual_size is None else virtual_size

    @property
    def virtual_size(self) -> int:
        return self._virtual_size

    def read_into(self, offset: int, buf: bytearray | memoryview) -> None:
        view = memoryview(buf).cast("B")
        check_range(offset, len(view), self._virtual_size, f"{self.path}: read")
        done = 0
        while done < len(view):
            n = preadv(self._fd, [view[done:]], offset + done)
            if n == 0:
                view[done:] = bytes(len(view) - done)
                return
            done += n

    def read_at(self, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        self.read_into(offset, buf)
        return bytes(buf)

    def allocated_extents(self) -> Iterator[Extent]:
        """Data ranges found with SEEK_DATA/SEEK_HOLE (the whole image where unsupported)."""
        end = min(self._file_size, self._virtual_size)
        pos = 0
        while pos < end:
            if sys.platform == "win32":  # no SEEK_DATA: assume data
                yield pos, end - pos
                return
            try:
                start = os.lseek(self._fd, pos, os.SEEK_DATA)
                stop = os.lseek(self._fd, start, os.SEEK_HOLE)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data after pos
                    return
                yield pos, end - pos  # the file system cannot tell: assume data
                return
            if start >= end:
                return
            stop = min(stop, end)
            yield start, stop - start
            pos = stop

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> RawReader:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


__all__ = ["RawReader", "RawWriter", "ZeroHow"]
