"""Who runs the scheduler (and the alert worker): exactly one process at a time.

- SQLite: the one server process (:mod:`.sole` refuses a second) is always the leader.
- PostgreSQL: the replica holding a session-level advisory lock on its own dedicated connection.
  The others try again every ``retry_seconds``. PostgreSQL drops the lock when that connection
  ends: at once when the leader process dies or stops (its socket closes), and after the TCP
  keep-alive / user time-out below when its machine or network vanishes. The leader re-checks
  its connection every ``retry_seconds`` and steps down when it fails.

Leadership only keeps the work on one replica; it is not what prevents a run being scheduled
twice. That is the scheduler's row locks and the unique index on (job, fire time), which hold
even if two replicas both believed they lead for a moment.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import make_url

log = logging.getLogger(__name__)

SCHEDULER_LOCK = 0x6533_6261_636B_0001
"""The advisory lock key of the scheduler's leader ("e3back" + 1)."""


class Leadership(Protocol):
    def is_leader(self) -> bool: ...

    def start(self, on_change: Callable[[bool], None]) -> None: ...

    def stop(self) -> None: ...


class SoleLeader:
    """SQLite: this process is the only server, so it leads from start to stop."""

    def __init__(self) -> None:
        self._leader = False

    def is_leader(self) -> bool:
        return self._leader

    def start(self, on_change: Callable[[bool], None]) -> None:
        self._leader = True
        on_change(True)

    def stop(self) -> None:
        self._leader = False


def libpq_conninfo(url: str) -> str:
    """A SQLAlchemy ``postgresql+driver://`` URL as a libpq URI (password included)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresLeader:
    """Leader while holding :data:`SCHEDULER_LOCK` on a connection of its own (not the pool's)."""

    def __init__(self, url: str, retry_seconds: float = 1.0, key: int = SCHEDULER_LOCK) -> None:
        self._conninfo = libpq_conninfo(url)
        self._retry = retry_seconds
        self._key = key
        self._leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_change: Callable[[bool], None] = lambda _leader: None

    def is_leader(self) -> bool:
        return self._leader

    def start(self, on_change: Callable[[bool], None]) -> None:
        self._on_change = on_change
        self._thread = threading.Thread(target=self._loop, name="e3backup-leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            log.info("scheduler leadership %s", "taken: this replica schedules" if leader else "released")
            try:
                self._on_change(leader)
            except Exception:
                log.exception("leadership change handler failed")

    def _loop(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                # keep-alives and a user time-out: a vanished peer ends the connection (and, on the
                # server's side, the lock) within seconds rather than the kernel's two hours
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=5,
                    application_name=f"e3backup-leader-{os.getpid()}",
                    keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
                    tcp_user_timeout=8000,
                ) as conn:
                    while not self._stop.is_set():
                        if self._leader:
                            conn.execute("SELECT 1")  # the lock lives as long as this connection
                        else:
                            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                            self._set(bool(row and row[0]))
                        self._stop.wait(self._retry)
            except Exception as e:
                log.warning("leader election: database connection lost (%s); retrying", type(e).__name__)
            finally:
                self._set(False)  # the connection (and the lock with it) is gone
            self._stop.wait(self._retry)


def leadership_for(url: str, retry_seconds: float = 1.0) -> Leadership:
    if make_url(url).get_backend_name() == "postgresql":
        return PostgresLeader(url, retry_seconds)
    return SoleLeader()


__all__ = ["SCHEDULER_LOCK", "Leadership", "PostgresLeader", "SoleLeader", "leadership_for", "libpq_conninfo"]
