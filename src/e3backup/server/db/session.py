"""Engine and session factory, built by the app factory (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, pool_size: int = 10) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        # FastAPI runs sync handlers in a thread pool: one connection may cross threads
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        # a request thread waits for a connection rather than failing at once; the pool is per
        # process, so replicas x workers x (pool_size x 2) must fit PostgreSQL's max_connections
        kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)
    if url.startswith("sqlite"):
        _private_sqlite_files(url)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: no corruption on power loss, at worst the last commits are lost
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def _private_sqlite_files(url: str) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask, often 0644),
    and tighten existing ones: the file holds sealed secrets and token hashes. SQLite gives
    its -wal and -shm files the database file's mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.parent.is_dir() and not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and p.stat().st_mode & 0o077:
            os.chmod(p, 0o600)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


__all__ = ["make_engine", "make_session_factory"]
