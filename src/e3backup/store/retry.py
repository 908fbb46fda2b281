"""Retrying a storage call: exponential backoff with jitter, bounded in count and in time.

Object stores fail transiently (503 SlowDown, 500, resets, timeouts); restic's ``retry`` backend
decorator rides such failures out and so do we. The bound is a number of attempts per operation
and a time window for the *outage*: the time since the storage stopped answering (``Outage``,
shared by every operation of one store). So ``--retry-max-time 20`` ends a command about 20 s
after the storage went silent, however many operations were waiting on it, rather than 20 s per
operation one after another. Each retry is logged at debug with the operation and the reason,
never with credentials; an outage that lasts ``WARN_EVERY_S`` is also logged as a warning then and
every ``WARN_EVERY_S`` after, so an unattended run's log never goes silent for minutes (a short
one that ends in an error stays that error's one line).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("e3backup.store.retry")

WARN_EVERY_S = 30.0  # while the storage keeps failing, one warning this often (not one per try)


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


class Outage:
    """How long the storage has failed to answer: from the start of the first failed request after
    its last answer (a success, or an error that is its answer, such as "not found") until now. A quiet
    spell in which nothing was asked is no outage. Thread-safe; one per store."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._mu = threading.Lock()
        self._since: float | None = None
        self._warned: float | None = None

    def answered(self) -> None:
        with self._mu:
            self._since = None
            self._warned = None

    def due_warning(self) -> bool:
        """True once the outage has lasted ``WARN_EVERY_S``, then once per ``WARN_EVERY_S``."""
        now = self._clock()
        with self._mu:
            if self._since is None or now - self._since < WARN_EVERY_S:
                return False
            if self._warned is not None and now - self._warned < WARN_EVERY_S:
                return False
            self._warned = now
            return True

    def failed(self, started: float) -> float:
        """Record a request started at ``started`` that failed; returns the seconds the outage
        has lasted so far."""
        now = self._clock()
        with self._mu:
            if self._since is None:
                self._since = started
            return now - self._since


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    retryable: Callable[[BaseException], bool],
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    outage: Outage | None = None,
) -> T:
    """Call ``fn`` until it succeeds, raises a non-retryable error, or the policy is spent: the
    operation's attempts, or ``policy.max_time`` of outage (``outage`` is shared by the store's
    operations; without one, the outage is this call's own).

    The last error propagates (the caller maps it), with a note saying why retrying stopped when
    it was retried; ``what`` names the operation in the debug log, e.g. ``"PUT bucket/keys/ab12…"``.
    """
    outage = outage or Outage(clock)
    delays = policy.delays()
    attempt = 1
    while True:
        started = clock()
        try:
            result = fn()
        except Exception as e:
            if not retryable(e):
                outage.answered()  # an answer, if not the one wanted
                raise
            delay = next(delays, None)
            silent = outage.failed(started)
            left = policy.max_time - silent
            if delay is None or left <= 0:
                log.debug("%s: giving up after %d attempts, %.1fs into the outage: %s",
                          what, attempt, silent, _reason(e))
                if delay is None:
                    e.add_note(f"gave up after {attempt} attempts")
                else:
                    e.add_note(f"gave up: no answer from the storage for {silent:.0f} s "
                               f"(the retry limit is {policy.max_time:g} s, --retry-max-time)")
                raise
            delay = min(delay, left)  # the last attempt comes as the window closes, not after it
            if outage.due_warning():
                log.warning("storage failing for %.0f s (%s: %s); retrying for up to %.0f s more",
                            silent, what, _reason(e), left)
            log.debug("%s: attempt %d failed (%s); retrying in %.2fs", what, attempt, _reason(e),
                      delay)
            sleep(delay)
            attempt += 1
            continue
        outage.answered()
        return result


def retry_note(e: BaseException) -> str:
    """The note ``call_with_retry`` added when it gave up on ``e``, or ``""``."""
    notes = getattr(e, "__notes__", None) or []
    return next((n for n in reversed(notes) if n.startswith("gave up")), "")


def _reason(e: BaseException) -> str:
    try:
        text = str(e) or type(e).__name__
    except Exception:
        text = type(e).__name__
    return text if len(text) <= 300 else text[:300] + "…"


__all__ = ["Outage", "RetryPolicy", "call_with_retry", "retry_note"]
