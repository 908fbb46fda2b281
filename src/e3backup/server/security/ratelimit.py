"""Sliding-window rate limits (sign-in, enrollment), in memory, on an injected clock.

An attempt is checked and counted in one step under a lock (:meth:`RateLimiter.begin`), and
counts while it is in flight: 100 parallel guesses get at most ``attempts`` real checks, not
as many as arrive before the first failure is recorded. When the check is done the caller ends
the attempt as a failure (it stays in the window) or not (and may have keys forgotten).

One server process holds the counters; a restart forgets them, which is acceptable for slowing
down guessing. Keys are chosen by the caller (client address, address + account).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from e3backup.server.clock import Clock


@dataclass
class _Key:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class Attempt:
    """One counted attempt, in flight until :meth:`end` (call it once, in ``finally``)."""

    def __init__(self, limiter: RateLimiter, keys: tuple[str, ...]) -> None:
        self._limiter = limiter
        self._keys = keys
        self._open = True

    def end(self, failed: bool, forget: tuple[str, ...] = ()) -> None:
        """A failure stays in the window; ``forget`` names keys whose failures stop counting
        (a right password clears its own address and account)."""
        if self._open:
            self._open = False
            self._limiter._end(self._keys, failed, forget)


class RateLimiter:
    def __init__(self, clock: Clock, attempts: int, window_seconds: float) -> None:
        self._clock = clock
        self._attempts = attempts
        self._window = window_seconds
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _key(self, key: str, now: float) -> _Key:
        entry = self._keys.setdefault(key, _Key())
        while entry.failures and entry.failures[0] <= now - self._window:
            entry.failures.popleft()
        return entry

    def begin(self, *keys: str, limits: dict[str, int] | None = None) -> Attempt | float:
        """Count an attempt on every key, or return the seconds to wait if any key is used up.

        A key's budget is its failures in the window plus the attempts still in flight;
        ``limits`` may give a key its own budget (default: ``attempts``).
        """
        limits = limits or {}
        with self._lock:
            now = self._now()
            waits = []
            for key in keys:
                entry = self._key(key, now)
                if len(entry.failures) + entry.in_flight >= limits.get(key, self._attempts):
                    oldest = entry.failures[0] + self._window - now if entry.failures else 1.0
                    waits.append(max(oldest, 1.0))
            if waits:
                return max(waits)
            for key in keys:
                self._keys[key].in_flight += 1
            return Attempt(self, keys)

    def _end(self, keys: tuple[str, ...], failed: bool, forget: tuple[str, ...]) -> None:
        with self._lock:
            now = self._now()
            for key in keys:
                entry = self._key(key, now)
                entry.in_flight -= 1
                if failed:
                    entry.failures.append(now)
                elif key in forget:
                    entry.failures.clear()
                if not entry.failures and not entry.in_flight:
                    del self._keys[key]


__all__ = ["Attempt", "RateLimiter"]
