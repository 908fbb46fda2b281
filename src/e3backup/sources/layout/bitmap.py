"""Runs of set bits in an allocation bitmap (bit 0 of byte 0 is the first unit, as in ext4/NTFS)."""

from __future__ import annotations

import re

_ONES = re.compile("1+")


def set_bit_runs(data: bytes, nbits: int) -> list[tuple[int, int]]:
    """(first, end) unit numbers of the runs of set bits among the first ``nbits`` bits.

    Runs in C speed: the bits become a reversed binary string that a regex scans once.
    """
    nbits = min(nbits, len(data) * 8)
    if nbits <= 0:
        return []
    raw = data[: (nbits + 7) // 8]
    if raw.count(0) == len(raw):
        return []
    x = int.from_bytes(raw, "little") & ((1 << nbits) - 1)
    bits = format(x, f"0{nbits}b")[::-1]
    return [(m.start(), m.end()) for m in _ONES.finditer(bits)]


__all__ = ["set_bit_runs"]
