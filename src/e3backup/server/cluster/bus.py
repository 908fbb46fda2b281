"""Wake-ups after commits: a request waiting for a run or a command to change is woken when a
transaction that changed it commits, whichever replica committed it.

Waiters register a key (``run:<id>``, ``command:<id>``) in :class:`Wakeups`. The bus is hooked
on the session factory: a flush that touched a ``Run``, a ``RunEvent`` or a ``Command`` records
its key (and one that revoked an agent or changed its token, ``agent:<id>``, which the agent
token cache of every replica watches), and the commit delivers it:

- :class:`LocalBus` (SQLite, one process): wakes this process's waiters after the commit.
- :class:`PostgresBus`: sends ``NOTIFY e3backup, '<key>'`` inside the transaction (PostgreSQL
  delivers it on commit, never on rollback), and a thread of every replica ``LISTEN``s on a
  dedicated connection and wakes its own waiters, the committing replica included. When that
  connection is lost and comes back, every waiter is woken once, since notifications were missed.

A wake-up only says "read again": waiters read the database, and still re-read on an interval,
so a lost notification delays an update but never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, inspect, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from e3backup.server.cluster.leader import libpq_conninfo
from e3backup.server.db.models import Agent, Command, Run, RunEvent
from e3backup.server.security.agent_tokens import AGENT_KEY_PREFIX, agent_key

log = logging.getLogger(__name__)

CHANNEL = "e3backup"
_KEYS = "e3backup_wake_keys"
_LOCAL = "e3backup_local_keys"


def run_key(run_id: int) -> str:
    return f"run:{run_id}"


def command_key(command_id: int) -> str:
    return f"command:{command_id}"


class Wakeups:
    """asyncio events keyed by what their request waits for; woken from any thread.

    ``watchers`` are called with every key woken, and with None when everything is (caches
    that must drop what a commit changed, e.g. the agent token cache)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self.watchers: list[Callable[[str | None], None]] = []

    def register(self, key: str) -> asyncio.Event:
        wake = asyncio.Event()
        with self._lock:
            self._waiting.setdefault(key, []).append((asyncio.get_running_loop(), wake))
        return wake

    def unregister(self, key: str, wake: asyncio.Event) -> None:
        with self._lock:
            entries = [e for e in self._waiting.get(key, []) if e[1] is not wake]
            if entries:
                self._waiting[key] = entries
            else:
                self._waiting.pop(key, None)

    def is_waiting(self, key: str) -> bool:
        with self._lock:
            return key in self._waiting

    def count(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._waiting.values())

    def wake(self, key: str) -> None:
        for watch in self.watchers:
            watch(key)
        with self._lock:
            entries = list(self._waiting.get(key, []))
        self._set(entries)

    def wake_all(self) -> None:
        for watch in self.watchers:
            watch(None)
        with self._lock:
            entries = [e for v in self._waiting.values() for e in v]
        self._set(entries)

    @staticmethod
    def _set(entries: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
        for loop, wake in entries:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # that request's loop has closed
                pass


def _changed_keys(session: Session) -> set[str]:
    keys: set[str] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Run) and obj.id is not None:
            keys.add(run_key(obj.id))
        elif isinstance(obj, RunEvent) and obj.run_id is not None:
            keys.add(run_key(obj.run_id))
        elif isinstance(obj, Command) and obj.id is not None:
            keys.add(command_key(obj.id))
            if obj.run_id is not None:
                keys.add(run_key(obj.run_id))
        elif isinstance(obj, Agent) and obj.id is not None and _credentials_changed(obj):
            keys.add(agent_key(obj.id))
    return keys


def _credentials_changed(agent: Agent) -> bool:
    state = inspect(agent)
    return state.deleted or any(state.attrs[name].history.has_changes() for name in ("revoked", "token_hash"))


class LocalBus:
    """One process: the committing thread wakes the waiters itself."""

    poll_fallback_seconds = 1.0  # nothing else commits, but keep re-reading as before replicas
    connected = True

    def __init__(self, wakeups: Wakeups) -> None:
        self.wakeups = wakeups

    def install(self, sessions: sessionmaker[Session]) -> None:
        event.listen(sessions, "after_flush", _collect)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", _forget)

    def _after_commit(self, session: Session) -> None:
        for key in session.info.pop(_KEYS, ()):
            self.wakeups.wake(key)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class PostgresBus:
    """Replicas on PostgreSQL: NOTIFY in the transaction, LISTEN on a connection of its own."""

    poll_fallback_seconds = 10.0  # a missed notification costs at most this much delay

    def __init__(self, wakeups: Wakeups, url: str, retry_seconds: float = 1.0) -> None:
        self.wakeups = wakeups
        self._conninfo = libpq_conninfo(url)
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False

    def install(self, sessions: sessionmaker[Session]) -> None:
        event.listen(sessions, "after_flush", _collect)
        event.listen(sessions, "before_commit", self._before_commit)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", _forget)

    def _before_commit(self, session: Session) -> None:
        session.flush()  # what the commit would flush: its keys too
        keys = session.info.pop(_KEYS, None)
        if keys:
            session.execute(
                text("SELECT pg_notify(:channel, k) FROM unnest(CAST(:keys AS text[])) AS k"),
                {"channel": CHANNEL, "keys": sorted(keys)},
            )
            # a revoked agent is refused by this replica as soon as the commit returns, not
            # only once its own LISTEN connection hears the notification
            local = {k for k in keys if k.startswith(AGENT_KEY_PREFIX)}
            if local:
                session.info[_LOCAL] = local

    def _after_commit(self, session: Session) -> None:
        local = session.info.pop(_LOCAL, ())
        _forget(session)
        for key in local:
            self.wakeups.wake(key)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="e3backup-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _listen(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=5, application_name="e3backup-listen",
                    keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    self.wakeups.wake_all()  # whatever happened while not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.wakeups.wake(note.payload)
                        conn.execute("SELECT 1")  # notice a dead connection even when all is quiet
            except Exception as e:
                log.warning("live updates: LISTEN connection lost (%s); retrying", type(e).__name__)
            finally:
                self.connected = False
            self._stop.wait(self._retry)


Bus = LocalBus | PostgresBus


def _collect(session: Session, _flush_context: Any) -> None:
    keys = _changed_keys(session)
    if keys:
        session.info.setdefault(_KEYS, set()).update(keys)


def _forget(session: Session, *_args: Any) -> None:
    session.info.pop(_KEYS, None)
    session.info.pop(_LOCAL, None)


def bus_for(url: str, wakeups: Wakeups) -> Bus:
    if make_url(url).get_backend_name() == "postgresql":
        return PostgresBus(wakeups, url)
    return LocalBus(wakeups)


__all__ = ["CHANNEL", "Bus", "LocalBus", "PostgresBus", "Wakeups", "bus_for", "command_key", "run_key"]
