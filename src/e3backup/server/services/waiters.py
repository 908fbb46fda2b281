"""Wake-ups for requests waiting on an agent's answer to a command (the disk-list wait).

A waiting request registers the command id; the agent's acknowledgement (handled in another
thread of the same process) notifies it. The waiter also re-checks the database on an interval,
so an answer that arrives through another server process is seen too.
"""

from __future__ import annotations

import asyncio
import threading


class CommandWaiters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def register(self, command_id: int) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiting.setdefault(command_id, []).append((asyncio.get_running_loop(), event))
        return event

    def unregister(self, command_id: int, event: asyncio.Event) -> None:
        with self._lock:
            entries = [e for e in self._waiting.get(command_id, []) if e[1] is not event]
            if entries:
                self._waiting[command_id] = entries
            else:
                self._waiting.pop(command_id, None)

    def notify(self, command_id: int) -> None:
        """Thread-safe: wakes every request waiting on ``command_id``."""
        with self._lock:
            entries = list(self._waiting.get(command_id, []))
        for loop, event in entries:
            loop.call_soon_threadsafe(event.set)


__all__ = ["CommandWaiters"]
