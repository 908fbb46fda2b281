"""The memory budget of a run (``--max-memory``, job policy ``max_memory_mb``).

A run's peak RSS is the process itself (interpreter, imports, the repository's index: ``BASE``,
docs/memory.md) plus the buffers its stages hold: chunks between readers and
savers, packs being filled and uploaded, blobs being decoded and written. Each engine sizes those
from ``MemoryBudget.work`` (the budget less ``BASE`` and the index), never above its own lean
defaults, so a budget only ever lowers worker counts, queue depths, pack buffering and range sizes;
when even the smallest pipeline does not fit, the run refuses to start and says what it needs.
The default (``DEFAULT_BUDGET``) leaves a 2 GiB machine most of its memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UsageError

MiB = 1 << 20
BASE = 72 * MiB
"""The process before any buffer: Python, the imported modules, the key, the walk's and the
allocator's own (measured: 75-100 MiB peak for runs whose buffers fit in 24 MiB; docs/memory.md)."""
DEFAULT_BUDGET = 256 * MiB
INDEX_BYTES_PER_BLOB = 64  # docs/index-memory.md: 54 bytes a blob in the tables, with headroom


def parse_memory(text: str) -> int:
    """``256M``, ``256MiB``, ``1G``, ``1.5G``, ``262144K`` -> bytes; a plain number is MiB."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    mult = {"k": 1 << 10, "m": MiB, "g": 1 << 30}.get(t[-1:])
    digits = t[:-1] if mult else t
    try:
        value = float(digits) * (mult or MiB)
    except ValueError:
        raise UsageError(f"invalid memory size {text!r} (examples: 256M, 1G, 512)") from None
    if value <= 0:
        raise UsageError(f"the memory budget must be positive, not {text!r}")
    return int(value)


def cores() -> int:
    return os.cpu_count() or 2


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes a run may keep resident; ``index_blobs`` is the loaded index's size (its share)."""

    total: int = DEFAULT_BUDGET
    index_blobs: int = 0

    @property
    def work(self) -> int:
        """What the run's buffers may hold."""
        return self.total - BASE - self.index_blobs * INDEX_BYTES_PER_BLOB

    def with_index(self, blobs: int) -> MemoryBudget:
        return MemoryBudget(self.total, blobs)

    def require(self, need: int, what: str) -> None:
        """Refuse to start when the smallest pipeline of ``what`` does not fit."""
        if need > self.work:
            least = (need + self.total - self.work + MiB - 1) // MiB
            index_mib = self.index_blobs * INDEX_BYTES_PER_BLOB // MiB
            index = f", the index {index_mib} MiB" if index_mib else ""
            raise UsageError(
                f"memory budget {self.total // MiB} MiB is too small for {what}: it needs at least {least} MiB "
                f"(the program {BASE // MiB} MiB{index}, buffers {(need + MiB - 1) // MiB} MiB)"
            )

    def __str__(self) -> str:
        return f"{self.total // MiB} MiB"


# -- what each engine derives ----------------------------------------------------------------------


@dataclass(frozen=True)
class PackBuffering:
    """Packs of a writer: uploads in flight, and whether packs are built in temporary files."""

    connections: int
    spill: bool


def pack_buffering(budget: MemoryBudget, share: int, pack_size: int, connections: int) -> PackBuffering:
    """At most ``share`` bytes for packs. In memory a writer holds one open pack per blob type, one
    waiting and one per upload (each twice while it is joined); below that, packs are built in
    temporary files (page cache, not this process) as restic always does."""
    for n in range(connections, 0, -1):
        if (n + 3) * pack_size + pack_size <= share:
            return PackBuffering(n, False)
    return PackBuffering(max(1, min(connections, 2)), True)


__all__ = [
    "BASE",
    "DEFAULT_BUDGET",
    "MemoryBudget",
    "PackBuffering",
    "cores",
    "pack_buffering",
    "parse_memory",
]
