"""What every disk image writer and reader offers, whatever the format (VHDX, raw).

The restore pipeline knows, before it writes anything, which ranges of the virtual disk will hold
non-zero data (from the snapshot's blob list): it passes them as `allocated` extents when it
creates a writer. Then N workers call `write_at` at arbitrary positions, concurrently; `close()`
finishes the file. Offsets and lengths are in virtual disk bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

from ..platform.compat import pwrite

Extent = tuple[int, int]
"""(offset, length) of a range of the virtual disk."""

Buffer = bytes | bytearray | memoryview

_ZERO = bytes(4 * 1024 * 1024)
ZERO_RUN_GRANULARITY = 16 * 1024
"""Zero runs at least this long (and so aligned) inside written data become holes."""


@runtime_checkable
class ImageWriter(Protocol):
    """A disk image being written. `write_at` is thread-safe; `close` is called once, last."""

    @property
    def virtual_size(self) -> int: ...

    def write_at(self, offset: int, data: Buffer) -> None:
        """Write `data` at virtual offset `offset` (positional, no shared cursor)."""

    def close(self) -> None:
        """Finish the file: flush, make it durable and, for VHDX, mark it valid."""

    def __enter__(self) -> ImageWriter: ...

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None: ...


@runtime_checkable
class ImageReader(Protocol):
    """A disk image being read. `read_into` is thread-safe."""

    @property
    def virtual_size(self) -> int: ...

    def read_into(self, offset: int, buf: bytearray | memoryview) -> None:
        """Fill `buf` with the virtual disk's bytes from `offset`; the range must lie inside it."""

    def read_at(self, offset: int, length: int) -> bytes: ...

    def allocated_extents(self) -> Iterator[Extent]:
        """Ranges that may hold non-zero data, ascending and merged; everything else reads zero."""

    def close(self) -> None: ...


def is_zero(data: Buffer) -> bool:
    """True when every byte of `data` is zero (memcmp speed, no allocation)."""
    view = memoryview(data).cast("B")
    step = len(_ZERO)
    return all(_ZERO.startswith(view[i : i + step]) for i in range(0, len(view), step))


def nonzero_runs(data: memoryview, granularity: int = ZERO_RUN_GRANULARITY) -> Iterator[tuple[int, int]]:
    """(start, end) of the parts of `data` to write, skipping all-zero `granularity` pieces.

    Pieces are aligned to `granularity` from the start of `data`; adjacent non-zero pieces merge
    into one run, so dense data is one write. A piece can only be all zero if its first eight
    bytes are, so one strided probe rules out most pieces of real data without comparing them.
    """
    n = len(data)
    pieces = -(-n // granularity)
    zero = [False] * pieces
    whole = n // granularity
    if granularity % 8 == 0 and whole:
        words = np.frombuffer(data, dtype=np.uint64, count=whole * granularity // 8)
        for i in np.flatnonzero(words[:: granularity // 8] == 0).tolist():
            zero[i] = is_zero(data[i * granularity : (i + 1) * granularity])
    else:
        for i in range(whole):
            zero[i] = is_zero(data[i * granularity : (i + 1) * granularity])
    if whole < pieces:
        zero[whole] = is_zero(data[whole * granularity :])
    start = -1
    for i, z in enumerate(zero):
        if z:
            if start >= 0:
                yield start, i * granularity
                start = -1
        elif start < 0:
            start = i * granularity
    if start >= 0:
        yield start, n


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """`os.pwrite` until every byte is written."""
    while data:
        written = pwrite(fd, data, offset)
        if written <= 0:  # never for files and devices; do not spin if it happens
            raise OSError(f"pwrite wrote nothing at offset {offset}")
        data, offset = data[written:], offset + written


def normalize_extents(extents: Iterable[Extent], limit: int) -> list[Extent]:
    """Sorted, merged, non-empty extents clipped to [0, limit)."""
    spans = sorted((max(0, o), min(limit, o + n)) for o, n in extents if n > 0)
    merged: list[list[int]] = []
    for start, end in spans:
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e - s) for s, e in merged]


def check_range(offset: int, length: int, virtual_size: int, what: str) -> None:
    if offset < 0 or length < 0 or offset + length > virtual_size:
        raise ValueError(
            f"{what}: range [{offset}, {offset + length}) is outside the virtual disk of {virtual_size} bytes"
        )


__all__ = [
    "Buffer",
    "Extent",
    "ImageReader",
    "ImageWriter",
    "check_range",
    "is_zero",
    "nonzero_runs",
    "normalize_extents",
    "pwrite_all",
]
