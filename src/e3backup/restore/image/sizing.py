"""How much an image restore holds at once, from its workers and the memory budget.

Three kinds of buffer, each a chunk or a pack range in size (docs/memory.md):

- **slots**: a worker reads a pack range and decodes its blobs only while it holds a slot. A slot
  keeps the range (mapped pages of a local pack, fetched bytes of a remote one) and a scratch
  buffer for compressed blobs. On a local repository reading costs nothing, so as many slots as
  cores keep the CPU busy; on a remote one each slot waits on the network, so every worker has one.
- **range size**: the bytes read with one request; the budget's share for ranges over the slots.
- **pool**: page-aligned buffers holding decoded blobs until their write and their batched ID
  check are done (``hash_batches``): the slots', plus a batch worth hashing together.

Within the budget the lean defaults below are kept; a smaller budget lowers the pool first, then
the range size, then the slots, and refuses to start when one slot and two buffers do not fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ...budget import MemoryBudget, cores
from ...formats.direct import ALIGN, aligned_buffer
from ...repo.hashing import LANES
from ..packs import MAX_RANGE

LOCAL_RANGE_SHARE = 8 << 20  # mapped pack pages held at once (a blob or two a slot)
REMOTE_RANGE_SHARE = 128 << 20
_MIN_GROUP = 9  # decoded blobs waiting for a batched check: hashing's smallest multi-buffer group


@dataclass(frozen=True)
class RestoreSizing:
    slots: int
    max_range: int
    pool: int

    def bytes(self, chunk: int) -> int:
        return self.slots * (self.max_range + chunk) + self.pool * chunk


def restore_sizing(budget: MemoryBudget, workers: int, chunk: int, local: bool) -> RestoreSizing:
    slots = min(workers, max(2, cores())) if local else workers
    share = LOCAL_RANGE_SHARE if local else REMOTE_RANGE_SHARE
    max_range = max(chunk, min(MAX_RANGE, share // slots))
    waiting = min(_MIN_GROUP, LANES) if LANES > 1 else 2
    pool = slots + waiting
    budget.require(RestoreSizing(1, chunk, 2).bytes(chunk), "this image restore")
    while RestoreSizing(slots, max_range, pool).bytes(chunk) > budget.work:
        if pool > slots + 1:
            pool -= 1
        elif max_range > chunk:
            max_range = max(chunk, max_range // 2)
        elif slots > 1:
            slots -= 1
            pool = slots + 1
        else:
            pool = 2
            break
    return RestoreSizing(slots, max_range, pool)


class Slots:
    """``count`` slots, each with its scratch buffer (grown to the largest compressed blob)."""

    def __init__(self, count: int) -> None:
        self._free: list[memoryview | None] = [None] * count
        self._sem = threading.Semaphore(count)
        self._mu = threading.Lock()

    @contextmanager
    def hold(self, stopped: Callable[[], bool]) -> Iterator[Scratch | None]:
        """A slot's scratch for the block; None once ``stopped`` (the restore is failing)."""
        while not self._sem.acquire(timeout=0.5):
            if stopped():
                yield None
                return
        with self._mu:
            scratch = Scratch(self._free.pop())
        try:
            yield scratch
        finally:
            with self._mu:
                self._free.append(scratch.view)
            self._sem.release()


class Scratch:
    def __init__(self, view: memoryview | None) -> None:
        self.view = view

    def get(self, size: int) -> memoryview:
        """At least ``size`` + 15 bytes (the AES binding writes up to 15 past the end)."""
        if self.view is None or len(self.view) < size + ALIGN:
            self.view = aligned_buffer(size + ALIGN)
        return self.view


__all__ = ["RestoreSizing", "Scratch", "Slots", "restore_sizing"]
