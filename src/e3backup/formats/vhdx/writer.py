"""Writes a dynamic (or fixed) VHDX from positional writes of the virtual disk's bytes.

The layout (see `layout.py`) is fixed at creation from the allocated extents: headers, region
tables, metadata and BAT are written then, payload blocks get their file offsets in block order.
`write_at` only translates virtual offsets to file offsets and `pwrite`s, so any number of threads
may call it at once, in any order. All-zero runs are skipped (holes read as zero); non-zero data for
a block that was not allocated raises `UnallocatedWriteError`.

The 'vhdxfile' signature is written by `close()`, after the payload is durable: a restore that
fails half-way leaves a file no VHDX reader will mistake for a complete disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from types import TracebackType

from e3backup.errors import UnallocatedWriteError
from e3backup.formats.direct import DirectWriter, Preallocation
from e3backup.formats.image import Buffer, Extent, check_range, nonzero_runs, pwrite_all
from e3backup.formats.vhdx.layout import UNALLOCATED, VhdxLayout, VhdxOptions, plan_layout

from ...platform.compat import O_BINARY, O_CLOEXEC


class VhdxWriter:
    """`VhdxWriter(path, virtual_size, allocated)`; then `write_at(...)` from any thread; `close()`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        virtual_size: int,
        allocated: Iterable[Extent] | None = None,
        options: VhdxOptions | None = None,
        *,
        direct: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        extents = None if allocated is None else list(allocated)
        self.layout: VhdxLayout = plan_layout(virtual_size, extents, options)
        self._block_size = self.layout.geometry.block_size
        self._offsets = self.layout.block_offsets
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | O_BINARY | O_CLOEXEC, 0o644)
        self._out: DirectWriter | None = None
        self._prealloc: Preallocation | None = None
        try:
            for offset, data in self.layout.metadata_structures():
                pwrite_all(self._fd, memoryview(data), offset)
            os.ftruncate(self._fd, self.layout.file_size)
            # payload blocks start on MiB boundaries, apart from the structures written above
            self._out = DirectWriter(self.path, self._fd, direct=direct)
            if extents and self._out.direct:
                self._prealloc = Preallocation(self._fd, self._file_ranges(extents))
        except BaseException:
            self.abort()
            raise

    @property
    def virtual_size(self) -> int:
        return self.layout.geometry.virtual_size

    def _file_ranges(self, extents: Iterable[Extent]) -> Iterator[Extent]:
        """Where the virtual ``extents`` lie in the file (within their allocated blocks)."""
        size = self._block_size
        for offset, length in extents:
            pos, end = offset, min(offset + length, self.virtual_size)
            while pos < end:
                block, within = divmod(pos, size)
                n = min(size - within, end - pos)
                if self._offsets[block] != UNALLOCATED:
                    yield self._offsets[block] + within, n
                pos += n

    def write_at(self, offset: int, data: Buffer) -> None:
        out = self._out
        if self._fd is None or out is None:
            raise ValueError(f"{self.path}: write_at after close")
        view = memoryview(data).cast("B")
        check_range(offset, len(view), self.virtual_size, f"{self.path}: write_at")
        size = self._block_size
        pos = 0
        while pos < len(view):
            block, within = divmod(offset + pos, size)
            piece = view[pos : pos + size - within]
            target = self._offsets[block]
            if target != UNALLOCATED:
                out.write_nonzero(piece, target + within, self._prealloc)
            elif (run := next(nonzero_runs(piece), None)) is not None:
                raise UnallocatedWriteError(
                    f"{self.path}: non-zero data at virtual offset {offset + pos + run[0]} falls in "
                    f"block {block}, which the allocation given at creation left out"
                )
            pos += len(piece)

    def close(self) -> None:
        """Make the payload durable, then write the file type identifier that makes it a VHDX."""
        fd = self._fd
        if fd is None:
            return
        if self._out is not None:
            self._out.close()
        try:
            if self._prealloc is not None:
                self._prealloc.finish()
            os.fsync(fd)
            offset, identifier = self.layout.file_identifier()
            pwrite_all(fd, memoryview(identifier), offset)
            os.fsync(fd)
        finally:
            self._fd = None
            os.close(fd)

    def abort(self) -> None:
        """Close without marking the file as a VHDX (it stays unreadable as one)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            if self._out is not None:
                self._out.close()
            os.close(fd)

    def __enter__(self) -> VhdxWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if et is None:
            self.close()
        else:
            self.abort()


__all__ = ["VhdxWriter"]
