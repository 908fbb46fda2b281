"""Bandwidth limits (``limit_upload`` / ``limit_download`` in KiB/s) as a decorator for any store.

A token bucket per direction, shared by all threads using the store: a transfer of n bytes takes
n tokens and waits while the bucket is in debt, so the long-run rate stays at the limit however
many uploaders run, and a burst up to one second's worth passes at once. Limits apply per object
(the wait happens before a save and after a load), which is exact on average for the many-MiB
packs a backup moves; that is restic's ``limiter`` idea without wrapping the byte stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ..errors import UsageError
from .base import FileType, Handle, Store


class TokenBucket:
    """Thread-safe token bucket of ``rate`` bytes per second; ``clock``/``sleep`` injectable."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise UsageError(f"a bandwidth limit must be positive, not {rate}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def take(self, n: int) -> None:
        """Take ``n`` tokens, sleeping as long as the bucket is then in debt."""
        if n <= 0:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class LimitedStore:
    """A ``Store`` that paces saves and loads of the wrapped store to the given KiB/s."""

    def __init__(
        self,
        store: Store,
        *,
        limit_upload: float | None = None,
        limit_download: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = store
        self._up = TokenBucket(limit_upload * 1024, clock=clock, sleep=sleep) if limit_upload else None
        self._down = (
            TokenBucket(limit_download * 1024, clock=clock, sleep=sleep) if limit_download else None
        )

    @property
    def location(self) -> str:
        return self.inner.location

    def create(self) -> None:
        self.inner.create()

    def save(self, h: Handle, data: bytes | memoryview) -> None:
        if self._up:
            self._up.take(len(data))
        self.inner.save(h, data)

    def save_file(self, h: Handle, f: BinaryIO, size: int) -> None:
        if self._up:
            self._up.take(size)
        self.inner.save_file(h, f, size)

    def load(self, h: Handle, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.load(h, offset, length)
        if self._down:
            self._down.take(len(data))
        return data

    def load_view(self, h: Handle, offset: int, length: int) -> bytes | memoryview:
        data = self.inner.load_view(h, offset, length)
        if self._down:
            self._down.take(len(data))
        return data

    def stat(self, h: Handle) -> int:
        return self.inner.stat(h)

    def list(self, t: FileType) -> Iterator[tuple[str, int]]:
        return self.inner.list(t)

    def remove(self, h: Handle) -> None:
        self.inner.remove(h)

    def close(self) -> None:
        self.inner.close()


def limit(store: Store, limit_upload: float | None, limit_download: float | None) -> Store:
    """``store`` itself when there is no limit, else wrapped in a ``LimitedStore``."""
    for name, value in (("limit_upload", limit_upload), ("limit_download", limit_download)):
        if value is not None and value < 0:
            raise UsageError(f"{name} must not be negative (KiB/s), not {value}")
    if not limit_upload and not limit_download:
        return store
    return LimitedStore(store, limit_upload=limit_upload, limit_download=limit_download)


__all__ = ["LimitedStore", "TokenBucket", "limit"]
