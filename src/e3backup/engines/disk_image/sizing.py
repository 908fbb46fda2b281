"""What an image backup holds at once, from its options and the memory budget (docs/memory.md).

Chunk buffers: one per reader, ``queue_depth`` waiting, one per saver (the pipeline's pool), and
each saver's compressed and sealed copies. Packs in memory (one open, one waiting, one per upload,
each twice while it is joined) only when they take at most a quarter of the budget's work share;
below that they are built in temporary files, as restic's are (page cache, not this process). A
smaller budget lowers the queue, then the savers, then the readers, and refuses to start below one
of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...budget import MemoryBudget, PackBuffering

_SPILL_PIECES = 2 * 256 * 1024  # a temporary pack's copy buffers (``pack_file``)


@dataclass(frozen=True)
class ImageSizing:
    readers: int
    savers: int
    queue_depth: int
    packs: PackBuffering

    def bytes(self, chunk: int, pack_size: int) -> int:
        packs = _SPILL_PIECES if self.packs.spill else (self.packs.connections + 4) * pack_size
        return (self.readers + self.queue_depth + 3 * self.savers) * chunk + packs


def image_sizing(
    budget: MemoryBudget, chunk: int, readers: int, savers: int, queue_depth: int, connections: int, pack_size: int
) -> ImageSizing:
    in_memory = (connections + 4) * pack_size <= budget.work // 4
    packs = PackBuffering(connections, spill=not in_memory)
    budget.require(ImageSizing(1, 1, 1, PackBuffering(1, True)).bytes(chunk, pack_size), "this image backup")
    s = ImageSizing(readers, savers, queue_depth, packs)
    while s.bytes(chunk, pack_size) > budget.work:
        if s.queue_depth > 1:
            s = ImageSizing(s.readers, s.savers, s.queue_depth - 1, packs)
        elif s.savers > 1:
            s = ImageSizing(s.readers, s.savers - 1, 1, packs)
        elif s.readers > 1:
            s = ImageSizing(s.readers - 1, 1, 1, packs)
        else:
            break
    return s


__all__ = ["ImageSizing", "image_sizing"]
