"""Segments an image restore finished writing, kept across attempts so a restore can resume.

A restore that stops because the repository became unreachable is run again by its caller (the
recovery console) with the same ``WrittenSegments``: segments already written are skipped, the
rest are restored. A segment counts as written once every one of its chunks is on the target
(its writes waited for), never earlier, so a skipped segment is never a hole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class WrittenSegments:
    """The first chunk index of each segment written; ``on_written`` is told of each (tests)."""

    def __init__(self, on_written: Callable[[int], None] | None = None) -> None:
        self._done: set[int] = set()
        self._mu = threading.Lock()
        self.on_written = on_written

    def add(self, first: int) -> None:
        with self._mu:
            self._done.add(first)
        if self.on_written is not None:
            self.on_written(first)

    def __contains__(self, first: object) -> bool:
        with self._mu:
            return first in self._done

    def __len__(self) -> int:
        with self._mu:
            return len(self._done)


__all__ = ["WrittenSegments"]
