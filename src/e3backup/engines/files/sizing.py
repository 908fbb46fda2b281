"""What a files backup holds at once, from its options and the memory budget (docs/memory.md).

- each reader thread chunks big files through a window of ``window`` bytes (more than the largest
  chunk, so cut points do not depend on it);
- ``inflight`` chunks wait for or run in the saver threads, each saver holding a compressed and a
  sealed copy of its chunk (counted at twice the average chunk);
- packs: in memory, one open per blob type, one waiting and one per upload (each twice while it is
  joined); or in temporary files, as restic's are, which costs page cache but not this process.
  In-memory packs are kept only when they take at most a quarter of the budget's work share (a
  budget of 1 GiB or more with the default four uploads): below that, temporary files.

The options' worker counts are the most used; a small budget lowers the savers, then the
in-flight chunks, then the readers and the window, and refuses to start below one of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...budget import MemoryBudget, PackBuffering
from .options import AVG_CHUNK, MAX_CHUNK

WINDOW = MAX_CHUNK + 4 * AVG_CHUNK  # 12 MiB: the tail carried over (~1 MiB) is chunked again: a few per cent
MIN_WINDOW = MAX_CHUNK + AVG_CHUNK
_CHUNK = 2 * AVG_CHUNK  # a chunk as it is counted: the average, with room for larger ones
_SPILL_PIECES = 2 * 256 * 1024  # a temporary pack's copy buffers (``pack_file``)


@dataclass(frozen=True)
class BackupSizing:
    read_workers: int
    save_workers: int
    inflight: int
    window: int
    packs: PackBuffering

    def bytes(self, pack_size: int) -> int:
        packs = _SPILL_PIECES if self.packs.spill else (self.packs.connections + 4) * pack_size
        return self.read_workers * self.window + (self.inflight + 2 * self.save_workers) * _CHUNK + packs


def backup_sizing(
    budget: MemoryBudget, read_workers: int, save_workers: int, connections: int, pack_size: int
) -> BackupSizing:
    in_memory = (connections + 4) * pack_size <= budget.work // 4
    packs = PackBuffering(connections, spill=not in_memory)
    least = BackupSizing(1, 1, 1, MIN_WINDOW, PackBuffering(1, True))
    budget.require(least.bytes(pack_size), "this files backup")
    s = BackupSizing(read_workers, save_workers, 2 * save_workers + 2, WINDOW, packs)
    while s.bytes(pack_size) > budget.work:
        if s.save_workers > 1:
            s = BackupSizing(s.read_workers, s.save_workers - 1, 2 * s.save_workers, s.window, packs)
        elif s.inflight > 1:
            s = BackupSizing(s.read_workers, 1, s.inflight - 1, s.window, packs)
        elif s.read_workers > 1:
            s = BackupSizing(s.read_workers - 1, 1, 1, s.window, packs)
        else:
            s = BackupSizing(1, 1, 1, MIN_WINDOW, packs)
            break
    return s


__all__ = ["WINDOW", "BackupSizing", "backup_sizing"]
