"""Sliding-window rate limits (login, enrollment), in memory, on an injected clock.

One server process holds the counters; a restart forgets them, which is acceptable for slowing
down guessing. Keys are chosen by the caller (client address, address + user name).
"""

from __future__ import annotations

import threading
from collections import deque

from e3backup.server.clock import Clock


class RateLimiter:
    def __init__(self, clock: Clock, attempts: int, window_seconds: float) -> None:
        self._clock = clock
        self._attempts = attempts
        self._window = window_seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self._window:
            hits.popleft()
        return hits

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may try again, or None if it may now."""
        with self._lock:
            now = self._now()
            hits = self._trim(key, now)
            if len(hits) < self._attempts:
                return None
            return max(hits[0] + self._window - now, 1.0)

    def hit(self, key: str) -> None:
        with self._lock:
            now = self._now()
            self._trim(key, now).append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)


__all__ = ["RateLimiter"]
