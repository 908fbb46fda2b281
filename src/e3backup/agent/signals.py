"""SIGTERM and SIGINT stop the agent, however many arrive and whenever they arrive.

Python runs a signal handler in the main thread between two byte-codes, and a second signal's
handler can run inside the first one. A handler that sets a ``threading.Event`` takes the
event's lock, which is not reentrant: when the second handler runs while the first holds it
(inside ``Event.set``), or while the main thread itself holds it (entering or leaving
``Event.wait``), the main thread waits for itself forever and the agent never exits. A
single-file agent gets each SIGTERM several times: systemd or a terminal signals the process
group, and every PyInstaller bootloader forwards what it receives to its child; after a
self-update there are two bootloaders, so three copies arrive within a millisecond.

So the handler here takes no lock: it writes the signal's number to a pipe (a system call, no
Python lock) and returns. A watcher thread reads the pipe and asks the agent to stop from an
ordinary thread, where taking locks is safe.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType

log = logging.getLogger("e3backup.agent")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal:
    def __init__(self, stop: Callable[[int], None]) -> None:
        self._stop = stop
        self._read, self._write = os.pipe()
        if sys.platform != "win32":  # a full pipe must not block the handler (Windows: os.set_blocking is 3.12+)
            os.set_blocking(self._write, False)
        self._watcher = threading.Thread(target=self._watch, name="agent-signals", daemon=True)

    def install(self, signals: Iterable[signal.Signals] = STOP_SIGNALS) -> None:
        """From the main thread (Python delivers signals there only)."""
        self._watcher.start()
        for s in signals:
            signal.signal(s, self._handler)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        try:
            os.write(self._write, bytes([signum]))
        except BlockingIOError:
            pass  # the pipe is full: stop requests are already waiting for the watcher

    def _watch(self) -> None:
        seen = False
        while True:
            got = os.read(self._read, 64)
            if not got:
                return
            if not seen:
                log.info("signal %d: stopping", got[0])
                seen = True
            self._stop(got[0])


__all__ = ["STOP_SIGNALS", "StopOnSignal"]
