"""Byte ranges of a device: ``Extent`` and the normalised ``ExtentList``.

An ``ExtentList`` is always sorted, free of empty extents, and merged (no two extents overlap or
touch), so two lists describing the same bytes compare equal. Every operation is a linear sweep
over both inputs and returns a new list; nothing here does I/O. The same type also serves for
ranges of chunk indexes (``chunk_ranges``), since those are integer intervals too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Extent:
    """``length`` bytes starting at ``offset`` (both non-negative)."""

    offset: int
    length: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.length < 0:
            raise ValueError(f"extent ({self.offset}, {self.length}) has a negative field")

    @property
    def end(self) -> int:
        return self.offset + self.length


ExtentLike = Extent | tuple[int, int]


class ExtentList:
    """A set of bytes as sorted, merged extents. Immutable."""

    __slots__ = ("_items",)

    def __init__(self, extents: Iterable[ExtentLike] = ()) -> None:
        pairs: list[tuple[int, int]] = []
        for e in extents:
            off, ln = (e.offset, e.length) if isinstance(e, Extent) else e
            if off < 0 or ln < 0:
                raise ValueError(f"extent ({off}, {ln}) has a negative field")
            if ln:
                pairs.append((off, off + ln))
        pairs.sort()
        self._items: tuple[Extent, ...] = tuple(Extent(s, e - s) for s, e in _merge_sorted(pairs))

    @classmethod
    def _from_bounds(cls, bounds: Iterable[tuple[int, int]]) -> ExtentList:
        """Build from (start, end) pairs that are already sorted and merged."""
        out = cls.__new__(cls)
        out._items = tuple(Extent(s, e - s) for s, e in bounds if e > s)
        return out

    @classmethod
    def from_bounds(cls, bounds: Iterable[tuple[int, int]]) -> ExtentList:
        """Build from (start, end) pairs in any order."""
        return cls((s, e - s) for s, e in bounds)

    def _bounds(self) -> list[tuple[int, int]]:
        return [(e.offset, e.end) for e in self._items]

    # container protocol -------------------------------------------------------------------

    def __iter__(self) -> Iterator[Extent]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __getitem__(self, i: int) -> Extent:
        return self._items[i]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExtentList) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        inner = ", ".join(f"({e.offset}, {e.length})" for e in self._items[:8])
        more = f", … {len(self._items) - 8} more" if len(self._items) > 8 else ""
        return f"ExtentList([{inner}{more}])"

    # queries -------------------------------------------------------------------------------

    @property
    def total_bytes(self) -> int:
        return sum(e.length for e in self._items)

    @property
    def end(self) -> int:
        """One past the last byte, or 0 when empty."""
        return self._items[-1].end if self._items else 0

    def covers(self, offset: int, length: int) -> bool:
        """Whether every byte of ``[offset, offset+length)`` is in the list."""
        if length <= 0:
            return True
        return self.intersection(ExtentList([(offset, length)])).total_bytes == length

    def overlaps(self, offset: int, length: int) -> bool:
        return bool(self.intersection(ExtentList([(offset, length)])))

    def to_pairs(self) -> list[list[int]]:
        """JSON-friendly ``[[offset, length], ...]``."""
        return [[e.offset, e.length] for e in self._items]

    # set algebra ---------------------------------------------------------------------------

    def union(self, other: ExtentList) -> ExtentList:
        merged = sorted(self._bounds() + other._bounds())
        return ExtentList._from_bounds(_merge_sorted(merged))

    __or__ = union

    def intersection(self, other: ExtentList) -> ExtentList:
        a, b = self._bounds(), other._bounds()
        out: list[tuple[int, int]] = []
        i = j = 0
        while i < len(a) and j < len(b):
            s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if s < e:
                out.append((s, e))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return ExtentList._from_bounds(out)

    __and__ = intersection

    def subtract(self, other: ExtentList) -> ExtentList:
        b = other._bounds()
        out: list[tuple[int, int]] = []
        j = 0
        for s, e in self._bounds():
            while j < len(b) and b[j][1] <= s:
                j += 1
            k, cur = j, s
            while k < len(b) and b[k][0] < e:
                if b[k][0] > cur:
                    out.append((cur, b[k][0]))
                cur = max(cur, b[k][1])
                k += 1
            if cur < e:
                out.append((cur, e))
        return ExtentList._from_bounds(out)

    __sub__ = subtract

    def symmetric_difference(self, other: ExtentList) -> ExtentList:
        return self.subtract(other).union(other.subtract(self))

    __xor__ = symmetric_difference

    def complement(self, size: int) -> ExtentList:
        """The bytes of ``[0, size)`` not in the list."""
        return ExtentList([(0, size)]).subtract(self)

    def clamp(self, size: int) -> ExtentList:
        """Drop everything at or beyond ``size`` (a device's end)."""
        return ExtentList._from_bounds((s, min(e, size)) for s, e in self._bounds() if s < size)

    def shift(self, delta: int) -> ExtentList:
        """Move every extent by ``delta`` bytes (partition-relative to device-absolute)."""
        return ExtentList._from_bounds((s + delta, e + delta) for s, e in self._bounds())

    # chunk grid ----------------------------------------------------------------------------

    def chunk_ranges(self, chunk_size: int) -> ExtentList:
        """Indexes of the grid chunks of ``chunk_size`` bytes that hold any byte of the list.

        The result is an ``ExtentList`` over chunk indexes: ``(first, count)`` runs.
        """
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        return ExtentList._from_bounds(
            _merge_sorted([(s // chunk_size, -(-e // chunk_size)) for s, e in self._bounds()])
        )

    def chunk_indexes(self, chunk_size: int) -> Iterator[int]:
        for run in self.chunk_ranges(chunk_size):
            yield from range(run.offset, run.end)

    def align(self, chunk_size: int) -> ExtentList:
        """Grow every extent outward to whole chunks of the grid."""
        return ExtentList._from_bounds(
            (s * chunk_size, e * chunk_size) for s, e in self.chunk_ranges(chunk_size)._bounds()
        )


def _merge_sorted(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in pairs:
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


__all__ = ["Extent", "ExtentLike", "ExtentList"]
