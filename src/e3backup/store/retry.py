"""Retrying a storage call: exponential backoff with jitter, bounded in count and in time.

Object stores fail transiently (503 SlowDown, 500, resets, timeouts); restic's ``retry`` backend
decorator rides such failures out and so do we. The bound is both a number of attempts and a
wall-clock window, so a dead endpoint fails an operation in predictable time. Each retry is logged
at debug with the operation and the reason, never with credentials.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("e3backup.store.retry")


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying; immutable, so one policy can be shared by threads.

    The defaults ride out a server restart or a throttling burst of a few minutes, as restic's
    (10 tries, about 15 minutes in total) do for a backup that runs unattended.
    """

    max_attempts: int = 10
    max_time: float = 300.0
    base_delay: float = 0.5
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_time < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry times must not be negative")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """Pauses before attempt 2, 3, ...: "equal jitter" over an exponentially growing cap.

        Half the pause is fixed and half random, so parallel uploaders that failed together do
        not retry together, and no pause is ever near zero (which would hammer a throttling server).
        """
        rnd = rng or random
        for n in range(self.max_attempts - 1):
            cap = min(self.max_delay, self.base_delay * (2**n))
            yield cap / 2 + rnd.uniform(0, cap / 2)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    retryable: Callable[[BaseException], bool],
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-retryable error, or the policy is spent.

    The last error propagates unchanged (the caller maps it); ``what`` names the operation in the
    debug log, e.g. ``"PUT bucket/prefix/keys/ab12…"``.
    """
    start = clock()
    delays = policy.delays()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as e:
            if not retryable(e):
                raise
            delay = next(delays, None)
            elapsed = clock() - start
            if delay is None or elapsed + delay > policy.max_time:
                log.debug("%s: giving up after %d attempts in %.1fs: %s", what, attempt, elapsed,
                          _reason(e))
                raise
            log.debug("%s: attempt %d failed (%s); retrying in %.2fs", what, attempt, _reason(e),
                      delay)
            sleep(delay)
            attempt += 1


def _reason(e: BaseException) -> str:
    try:
        text = str(e) or type(e).__name__
    except Exception:
        text = type(e).__name__
    return text if len(text) <= 300 else text[:300] + "…"


__all__ = ["RetryPolicy", "call_with_retry"]
