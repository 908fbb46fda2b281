"""SQLite is for one server process: a second one on the same file is refused at start.

SQLite would let two processes share the file, but each would run its own scheduler and keep its
own wake-ups, so runs would be planned twice and live updates lost. An exclusive ``flock`` on
``<database>.server-lock`` says a server process holds the file; it is released when the process
ends, however it ends. Inside one process the claim is counted (the CLI and the app may both
claim), so only other processes are refused.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from sqlalchemy import make_url

from e3backup.errors import UsageError

_lock = threading.Lock()
_held: dict[Path, tuple[int, int]] = {}  # lock file -> (fd, claims in this process)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None: not SQLite, or in memory)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


class SoleClaim:
    """This process's claim on a SQLite file; :meth:`release` once."""

    def __init__(self, path: Path | None) -> None:
        self._path = path

    def release(self) -> None:
        path, self._path = self._path, None
        if path is None:
            return
        with _lock:
            fd, count = _held[path]
            if count > 1:
                _held[path] = (fd, count - 1)
                return
            del _held[path]
        os.close(fd)  # closing the descriptor drops the flock


def claim(url: str) -> SoleClaim:
    """Claim the SQLite file of ``url`` for this process; UsageError if another server holds it."""
    database = sqlite_file(url)
    if database is None or sys.platform == "win32":
        return SoleClaim(None)
    import fcntl

    path = database.with_name(database.name + ".server-lock")
    with _lock:
        if path in _held:
            fd, count = _held[path]
            _held[path] = (fd, count + 1)
            return SoleClaim(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"another e3backup server process (pid {holder}) is using the SQLite database {database}; "
                "SQLite serves one process only: stop the other one, or run replicas (and --workers) on "
                "PostgreSQL (see docs/deploy.md)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held[path] = (fd, 1)
    return SoleClaim(path)


__all__ = ["SoleClaim", "claim", "sqlite_file"]
