"""No snapshot: the live device is read, and the run says so with a warning event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from e3backup.events import Event, EventCode
from e3backup.sources.snapshot.base import Snapshot


class NoSnapshotProvider:
    name = "none"

    def __init__(self, on_event: Callable[[Event], None] | None = None, reason: str = "") -> None:
        self._emit = on_event or (lambda _e: None)
        self.reason = reason

    @contextmanager
    def snapshot(self, source: str) -> Iterator[Snapshot]:
        why = f": {self.reason}" if self.reason else ""
        self._emit(
            Event(
                EventCode.DISK_IMAGE_SNAPSHOT_NONE,
                f"reading {source} live, without a snapshot{why}",
                details={"device": source, "reason": self.reason},
            )
        )
        yield Snapshot(source, source, self.name)


__all__ = ["NoSnapshotProvider"]
