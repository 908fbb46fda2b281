"""Requests that arrive together are served by one call: one thread hop, one statement.

A replica's CPU per agent request was mostly fixed costs: the hop into the thread pool, a
connection checkout (with its liveness ping), a statement through SQLAlchemy and psycopg, a
commit. ``Coalescer`` runs at most ``max_in_flight`` calls of ``work`` at a time, in the thread
pool; items that arrive meanwhile wait and go together into the next call. So a quiet replica
serves each item at once, alone, and a busy one amortises the fixed costs over as many items as
came in during one call, with no timer and no added delay. Used from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass
class _Waiting(Generic[Item, Answer]):
    item: Item
    answer: asyncio.Future[Answer | None]


class Coalescer(Generic[Item, Answer]):
    """``await submit(item)`` is ``work([..., item, ...])``'s answer for it, or None when that
    call failed (logged; the caller then serves the item the slow way, alone)."""

    def __init__(self, work: Callable[[list[Item]], Sequence[Answer]], what: str, *, max_batch: int,
                 max_in_flight: int) -> None:
        self.work = work
        self.what = what  # names the items in the log: "agent polls"
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[_Waiting[Item, Answer]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.batches = 0  # calls that answered, and the items in them: how well it coalesces
        self.served = 0

    async def submit(self, item: Item) -> Answer | None:
        if self.closed:
            return None
        waiting: _Waiting[Item, Answer] = _Waiting(item, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._in_flight < self.max_in_flight:
            self._start_next()
        return await waiting.answer

    def queued(self) -> int:
        """Items waiting for a call to finish before theirs starts."""
        return len(self._waiting)

    def close(self) -> None:
        """Start no more calls (the app's shutdown): what waits is answered None at once."""
        self.closed = True
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            if not w.answer.done():
                w.answer.set_result(None)

    def _start_next(self) -> None:
        # an item whose request was cancelled meanwhile (a client gone, the server stopping) is not served
        live = [w for w in self._waiting if not w.answer.done()]
        batch, self._waiting = live[: self.max_batch], live[self.max_batch :]
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Waiting[Item, Answer]]) -> None:
        answers: Sequence[Answer | None] = [None] * len(batch)
        try:
            answers = await run_in_threadpool(self.work, [w.item for w in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for {len(batch)} {self.what}")
            self.batches += 1
            self.served += len(batch)
        except Exception:
            answers = [None] * len(batch)
            log.warning("%d %s could not be served together; they are served one by one", len(batch),
                        self.what, exc_info=True)
        finally:
            self._in_flight -= 1
            for waiting, answer in zip(batch, answers, strict=True):
                if not waiting.answer.done():
                    waiting.answer.set_result(answer)
            while self._waiting and self._in_flight < self.max_in_flight:
                self._start_next()


__all__ = ["Coalescer"]
