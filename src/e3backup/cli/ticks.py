"""Waiting in the main thread so that Ctrl-C and SIGTERM are seen at once.

A wait without a timeout in the main thread is not ended by a signal the kernel hands to another
of the process's threads (an NBD server's, QEMU's readers, a restore's workers): CPython runs the
handler only when the main thread is next back in the interpreter. One test run in ~1,800 saw
`image serve` keep serving after Ctrl-C that way. Waiting in ticks bounds the delay to one tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SIGNAL_TICK = 0.5


def wait_in_ticks(wait: Callable[[float], T], done: Callable[[T], bool]) -> T:
    """Call ``wait(SIGNAL_TICK)`` until ``done`` holds for what it returned, and return that.
    Ctrl-C (``KeyboardInterrupt``) and SIGTERM (the CLI's ``E3Error``) propagate to the caller."""
    while True:
        result = wait(SIGNAL_TICK)
        if done(result):
            return result
