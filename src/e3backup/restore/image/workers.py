"""Segment workers: each job pulls segments in disk order; the first error stops them all.

Two events: ``cancel`` is the caller's (the run contract: ``Cancelled`` once set), ``stop`` is
this restore's own (set on the first error, on a lock conflict, or when ``cancel`` is seen), so
a failing restore never sets its caller's cancel event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from ...errors import Cancelled, E3Error

T = TypeVar("T")
_POLL = 0.2


class Stops:
    """The caller's cancel event, this run's stop event and the first error of any thread."""

    def __init__(self, cancel: threading.Event | None, stop: threading.Event | None = None) -> None:
        self.cancel = cancel or threading.Event()
        self.stop = stop or threading.Event()
        self._mu = threading.Lock()
        self.error: BaseException | None = None

    def stopped(self) -> bool:
        return self.stop.is_set() or self.cancel.is_set()

    def fail(self, e: BaseException) -> None:
        with self._mu:
            if self.error is None:
                self.error = e
        self.stop.set()

    def raise_if_stopped(self, what: str) -> None:
        """The first error; else ``Cancelled`` if the caller cancelled; else a plain stop."""
        if self.error is not None:
            raise self.error
        if self.cancel.is_set():
            raise Cancelled(f"{what} cancelled")
        if self.stop.is_set():
            raise E3Error(f"{what} stopped")


def run_jobs(
    items: Sequence[T],
    jobs: Sequence[Callable[[T], None]],
    stops: Stops,
    what: str,
    finish: Callable[[], None] | None = None,
) -> None:
    """Run every job in its own thread over ``items``; each calls ``finish`` when they run out."""
    it: Iterator[T] = iter(items)
    it_lock = threading.Lock()

    def loop(job: Callable[[T], None]) -> None:
        try:
            while not stops.stopped():
                with it_lock:
                    item = next(it, None)
                if item is None:
                    break
                job(item)
            if finish is not None and not stops.stopped():
                finish()
        except BaseException as e:
            stops.fail(e)

    threads = [threading.Thread(target=loop, args=(j,), name=f"image-restore-{n}") for n, j in enumerate(jobs)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(_POLL)
                if stops.cancel.is_set():
                    stops.stop.set()  # the pool and the I/O threads listen to ``stop``
    except BaseException:
        stops.stop.set()
        for t in threads:
            t.join()
        raise
    stops.raise_if_stopped(what)


__all__ = ["Stops", "run_jobs"]
