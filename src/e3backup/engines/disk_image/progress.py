"""Progress and events of an image backup: a thread-safe event sink and stall detection.

Progress counts bytes of the device (the denominator is the device size; the plan's size and
the bytes read so far ride along in the status lines). ``StallDetector`` is the seeds' rule: a
run whose bytes stop moving for ``stall_after`` seconds gives ``DISK_IMAGE_STALLED`` (a read
stream that hangs: a dying disk, a dead network volume) -- *except* in the final ~1 % of the
device (at least 128 MiB, the data still in queues and packs when the last chunk is read),
where the last packs and the index are being written: there stall events are suppressed and it
says ``DISK_IMAGE_FINALIZING_SLOW`` and then ``DISK_IMAGE_FINALIZING_STALLED`` instead. Each
event comes once per quiet spell. Without ``stall_after`` it is quiet before the tail
(``idle_for`` is there for a watchdog). The clock is injected, so tests need no sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from ...events import Event, EventCode

TAIL_FRACTION = 0.01
TAIL_MIN_BYTES = 128 << 20
SLOW_AFTER = 60.0
STALLED_AFTER = 300.0
KEEP_EVENTS = 200


class EventSink:
    """Forwards events to ``on_event`` one at a time (from any thread) and keeps a bounded record."""

    def __init__(self, on_event: Callable[[Event], None] | None = None) -> None:
        self._forward = on_event
        self._lock = threading.Lock()
        self.events: list[Event] = []
        self.counts: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.counts[event.code.value] += 1
            if len(self.events) < KEEP_EVENTS:
                self.events.append(event)
            if self._forward is not None:
                self._forward(event)

    def emit(self, code: EventCode, message: str, **details: object) -> None:
        self(Event(code, message, details=dict(details)))


class StallDetector:
    """Watches a byte counter; reports slow/stalled progress only in the tail of the device."""

    def __init__(
        self,
        total: int,
        clock: Callable[[], float] = time.monotonic,
        slow_after: float = SLOW_AFTER,
        stalled_after: float = STALLED_AFTER,
        tail_fraction: float = TAIL_FRACTION,
        tail_min: int = TAIL_MIN_BYTES,
        stall_after: float | None = None,
    ) -> None:
        self.total = total
        self.clock = clock
        self.slow_after = slow_after
        self.stalled_after = stalled_after
        self.stall_after = stall_after
        tail = max(int(total * tail_fraction + 0.5), tail_min)
        self.tail_start = max(0, total - tail)
        self._done = -1
        self._since = clock()
        self._reported = 0  # 0 nothing, 1 slow, 2 stalled (per quiet spell)

    @property
    def idle_for(self) -> float:
        return self.clock() - self._since

    def in_tail(self, done: int) -> bool:
        return done >= self.tail_start

    def observe(self, done: int) -> Event | None:
        """Feed the current byte count; returns an event when one is due (at most one per level)."""
        now = self.clock()
        if done != self._done:
            self._done, self._since, self._reported = done, now, 0
            return None
        idle = now - self._since
        details: dict[str, object] = {"bytes_done": done, "device_size": self.total, "idle_seconds": round(idle, 1)}
        if not self.in_tail(done):
            if self.stall_after is None or idle < self.stall_after or self._reported:
                return None
            self._reported = 1
            return Event(
                EventCode.DISK_IMAGE_STALLED,
                f"reading the disk made no progress for {idle:.0f}s (at byte {done} of {self.total})",
                details={**details, "stall_seconds": self.stall_after},
            )
        if idle >= self.stalled_after and self._reported < 2:
            self._reported = 2
            return Event(
                EventCode.DISK_IMAGE_FINALIZING_STALLED,
                f"no progress for {idle:.0f}s while finishing the image",
                details=details,
            )
        if idle >= self.slow_after and self._reported < 1:
            self._reported = 1
            return Event(
                EventCode.DISK_IMAGE_FINALIZING_SLOW,
                f"finishing the image: {idle:.0f}s without progress (uploading the last data)",
                details=details,
            )
        return None


__all__ = ["SLOW_AFTER", "STALLED_AFTER", "TAIL_MIN_BYTES", "EventSink", "StallDetector"]
