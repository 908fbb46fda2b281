"""Sliding-window rate limits (sign-in, enrollment) on an injected clock.

An attempt is checked and counted in one step (``begin``), and counts while it is in flight: 100
parallel guesses get at most ``attempts`` real checks, not as many as arrive before the first
failure is recorded. When the check is done the caller ends the attempt as a failure (it stays
in the window) or not (and may have keys forgotten). Keys are chosen by the caller (client
address, address + account).

- :class:`MemoryRateLimiter` (SQLite, one process): counters in memory under a lock; a restart
  forgets them, which is acceptable for slowing down guessing. (Writing them to SQLite would
  wait on the request's own open write transaction.)
- :class:`DatabaseRateLimiter` (PostgreSQL replicas): counters are rows of
  ``rate_limit_attempts``, so every replica and every ``--workers`` process spends the same
  budget. The check-and-count of a key is serialized across replicas by a transaction advisory
  lock on the key. An attempt left in flight by a process that died stops counting after
  ``IN_FLIGHT_SECONDS``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, func, make_url, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from e3backup.server.clock import Clock
from e3backup.server.db.models import RateLimitAttempt

IN_FLIGHT_SECONDS = 120.0
SWEEP_SECONDS = 60.0
LOCK_SPACE = 0x6533  # first key of the two-integer advisory locks taken per rate-limit key


class Attempt:
    """One counted attempt, in flight until :meth:`end` (call it once, in ``finally``)."""

    def __init__(self, finish: Callable[[bool, tuple[str, ...]], None], keys: tuple[str, ...]) -> None:
        self._finish = finish
        self._keys = keys
        self._open = True

    def end(self, failed: bool, forget: tuple[str, ...] = ()) -> None:
        """A failure stays in the window; ``forget`` names keys whose failures stop counting
        (a right password clears its own address and account)."""
        if self._open:
            self._open = False
            self._finish(failed, tuple(k for k in forget if k in self._keys))


class RateLimiter(Protocol):
    """What the routes use: ``begin`` returns an :class:`Attempt` or the seconds to wait."""

    def begin(self, *keys: str, limits: dict[str, int] | None = None) -> Attempt | float: ...


@dataclass
class _Key:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class MemoryRateLimiter:
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
            return Attempt(lambda failed, forget: self._end(keys, failed, forget), keys)

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



class DatabaseRateLimiter:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, attempts: int, window_seconds: float
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._attempts = attempts
        self._window = timedelta(seconds=window_seconds)
        self._lock = threading.Lock()
        self._swept: datetime | None = None

    def begin(self, *keys: str, limits: dict[str, int] | None = None) -> Attempt | float:
        """Count an attempt on every key, or return the seconds to wait if any key is used up.

        A key's budget is its failures in the window plus the attempts still in flight;
        ``limits`` may give a key its own budget (default: ``attempts``).
        """
        limits = limits or {}
        with self._lock, self._sessions() as s:
            if s.get_bind().dialect.name == "postgresql":
                for key in sorted(set(keys)):
                    s.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                              {"space": LOCK_SPACE, "key": key})
            now = self._clock.now()
            self._sweep(s, now, keys)
            waits = []
            for key in keys:
                failures, oldest, in_flight = s.execute(
                    select(
                        func.count(RateLimitAttempt.failed_at),
                        func.min(RateLimitAttempt.failed_at),
                        func.count() - func.count(RateLimitAttempt.failed_at),
                    ).where(RateLimitAttempt.key == key)
                ).one()
                if failures + in_flight >= limits.get(key, self._attempts):
                    left = (oldest + self._window - now).total_seconds() if oldest is not None else 1.0
                    waits.append(max(left, 1.0))
            if waits:
                s.commit()
                return max(waits)
            rows = [RateLimitAttempt(key=key, started_at=now) for key in keys]
            s.add_all(rows)
            s.commit()
            ids = [r.id for r in rows]
            return Attempt(lambda failed, forget: self._end(ids, failed, forget), keys)

    def _sweep(self, s: Session, now: datetime, keys: tuple[str, ...]) -> None:
        """Drop failures out of the window and attempts a dead process left in flight: for these
        keys always, for every key once a minute (the table stays as small as the window)."""
        stale = (RateLimitAttempt.failed_at <= now - self._window) | (
            RateLimitAttempt.failed_at.is_(None)
            & (RateLimitAttempt.started_at <= now - timedelta(seconds=IN_FLIGHT_SECONDS))
        )
        if self._swept is None or now - self._swept >= timedelta(seconds=SWEEP_SECONDS) or now < self._swept:
            self._swept = now
            s.execute(delete(RateLimitAttempt).where(stale))
        else:
            s.execute(delete(RateLimitAttempt).where(RateLimitAttempt.key.in_(keys), stale))

    def _end(self, ids: list[int], failed: bool, forget: tuple[str, ...]) -> None:
        with self._sessions() as s:
            if failed:
                s.execute(update(RateLimitAttempt).where(RateLimitAttempt.id.in_(ids))
                          .values(failed_at=self._clock.now()))
            else:
                s.execute(delete(RateLimitAttempt).where(RateLimitAttempt.id.in_(ids)))
                if forget:
                    s.execute(delete(RateLimitAttempt).where(
                        RateLimitAttempt.key.in_(forget), RateLimitAttempt.failed_at.is_not(None)))
            s.commit()


def rate_limiter_for(
    url: str, sessions: sessionmaker[Session], clock: Clock, attempts: int, window_seconds: float
) -> RateLimiter:
    if make_url(url).get_backend_name() == "postgresql":
        return DatabaseRateLimiter(sessions, clock, attempts, window_seconds)
    return MemoryRateLimiter(clock, attempts, window_seconds)


__all__ = ["Attempt", "DatabaseRateLimiter", "MemoryRateLimiter", "RateLimiter", "rate_limiter_for"]
