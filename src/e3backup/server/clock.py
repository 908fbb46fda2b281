"""Time as the server sees it: injected, so tests can move it (session expiry, scheduler)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


__all__ = ["Clock", "SystemClock"]
