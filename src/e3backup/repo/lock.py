"""Repository locks (``locks/<id>``), compatible with restic's (spec section 9).

Shared locks (backup, restore) coexist; an exclusive lock (prune, check) excludes everything.
A lock is stale when older than 30 minutes, or when it names this host and its PID is dead.
Held locks are refreshed every 5 minutes by writing a new file and removing the old one. restic
probes liveness with SIGHUP, so a process holding a lock ignores SIGHUP.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import AccessDeniedError, E3Error, LockError, NotFoundError
from ..store.base import FileType, Handle, Store
from ..store.temporaries import process_alive
from . import unpacked
from .crypto import Key
from .timefmt import format_ns, now_ns, parse_ns

log = logging.getLogger(__name__)

STALE_AFTER_NS = 30 * 60 * 1_000_000_000
REFRESH_INTERVAL_S = 5 * 60
RECHECK_DELAY_S = 0.2


@dataclass
class LockInfo:
    id: str
    time: int
    exclusive: bool
    hostname: str
    username: str
    pid: int
    uid: int = 0
    gid: int = 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "time": format_ns(self.time),
            "exclusive": self.exclusive,
            "hostname": self.hostname,
            "username": self.username,
            "pid": self.pid,
        }
        if self.uid:
            d["uid"] = self.uid
        if self.gid:
            d["gid"] = self.gid
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], lock_id: str) -> LockInfo:
        return cls(
            lock_id,
            parse_ns(d["time"]),
            bool(d.get("exclusive")),
            str(d.get("hostname") or ""),
            str(d.get("username") or ""),
            int(d.get("pid") or 0),
            int(d.get("uid") or 0),
            int(d.get("gid") or 0),
        )

    def is_stale(self, now: int | None = None) -> bool:
        now = now_ns() if now is None else now
        if now - self.time > STALE_AFTER_NS:
            return True
        return self.holder_is_dead()

    def holder_is_dead(self) -> bool:
        """True when the lock names this host and its PID is gone: restic's certain case of a
        stale lock (a SIGKILLed run), safe to remove whatever the lock's age."""
        return self.hostname == socket.gethostname() and not process_alive(self.pid)

    def describe(self) -> str:
        kind = "exclusive" if self.exclusive else "shared"
        return (
            f"{kind} lock {self.id[:8]} held by PID {self.pid} on host {self.hostname} "
            f"(user {self.username}) since {format_ns(self.time)}"
        )


def list_locks(store: Store, key: Key, version: int = 2) -> list[LockInfo]:
    """Every decodable lock; unreadable ones are logged and skipped (restic 0.14 behaviour)."""
    out = []
    for name, _ in store.list(FileType.LOCK):
        try:
            data = store.load(Handle(FileType.LOCK, name))
            out.append(LockInfo.from_json(unpacked.decode(key, data, name, "lock", version), name))
        except NotFoundError:
            continue
        except (E3Error, KeyError, ValueError) as e:
            log.warning("ignoring unreadable lock %s: %s", name, e)
    return out


def remove_stale_locks(store: Store, key: Key, version: int = 2, remove_all: bool = False) -> list[LockInfo]:
    removed = []
    for lk in list_locks(store, key, version):
        if remove_all or lk.is_stale():
            try:
                store.remove(Handle(FileType.LOCK, lk.id))
                removed.append(lk)
            except NotFoundError:
                pass
    return removed


class Lock:
    """A held lock; refreshed in the background until ``release``. Use as a context manager."""

    def __init__(
        self,
        store: Store,
        key: Key,
        exclusive: bool,
        version: int = 2,
        refresh_interval: float = REFRESH_INTERVAL_S,
        sleep: Callable[[float], None] | None = None,
        meanwhile: Callable[[], object] | None = None,
        on_conflict: Callable[[LockError], None] | None = None,
    ) -> None:
        """``meanwhile`` runs while the lock waits to re-check for competitors: read-only work
        the command needs anyway (loading the index), so the wait costs no time.

        ``on_conflict`` is for read-only commands that can stop cleanly at any point (a restore into
        a new file: every blob it writes is verified, so a competitor can only make it fail, never
        write wrong data). ``acquire`` then returns as soon as the lock file is written and the
        re-check runs in the background; a competitor found then (or a re-check that fails) is
        passed to ``on_conflict``, which stops the command. A command that has already finished by
        then is not undone. A competitor that locked before us is still refused up front.
        A command that writes (a backup: packs first, its index and snapshot last) uses it too and
        calls ``confirm`` before its first lasting write: the packs before it are unreferenced
        until then, so a competitor found by the re-check costs nothing but the time spent."""
        self.store = store
        self.key = key
        self.exclusive = exclusive
        self.version = version
        self.refresh_interval = refresh_interval
        self._sleep = sleep or _default_sleep
        self._meanwhile = meanwhile
        self._on_conflict = on_conflict
        self.id = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mu = threading.Lock()
        self._rechecked = threading.Event()  # the re-check ran (or will not: released first)
        self._conflict: LockError | None = None

    def _conflicts(self) -> list[LockInfo]:
        """Locks that exclude ours; locks of dead holders on this host are removed on the way."""
        out = []
        for lk in self._drop_dead(list_locks(self.store, self.key, self.version)):
            if lk.id == self.id:
                continue
            if self.exclusive or lk.exclusive:
                out.append(lk)
        return out

    def _drop_dead(self, locks: list[LockInfo]) -> list[LockInfo]:
        """Remove every lock whose holder died on this host, conflicting or not: a killed
        backup's shared lock would otherwise stay forever and make restic refuse the repository."""
        live = []
        for lk in locks:
            if lk.id != self.id and lk.holder_is_dead():
                log.warning("removed stale %s: the process is gone", lk.describe())
                self._remove(lk.id)
            else:
                live.append(lk)
        return live

    def _drop_stale(self, conflicts: list[LockInfo]) -> list[LockInfo]:
        """Remove conflicting locks whose holder is dead (same host) or that are 30 min old."""
        live = []
        for lk in conflicts:
            if lk.is_stale():
                log.warning("removed stale %s", lk.describe())
                self._remove(lk.id)
            else:
                live.append(lk)
        return live

    def _write(self) -> str:
        info = LockInfo(
            "",
            now_ns(),
            self.exclusive,
            socket.gethostname(),
            _username(),
            os.getpid(),
            os.getuid() if hasattr(os, "getuid") else 0,
            os.getgid() if hasattr(os, "getgid") else 0,
        )
        lock_id, sealed = unpacked.encode(self.key, info.to_json(), self.version)
        self.store.save(Handle(FileType.LOCK, lock_id), sealed)
        return lock_id

    def acquire(self) -> Lock:
        _ignore_sighup()
        conflicts = self._drop_stale(self._conflicts())
        if conflicts:
            raise LockError(_conflict_message(conflicts))
        self.id = self._write()
        if self._on_conflict is None:
            self._wait_before_recheck()
            conflicts = self._conflicts()
            if conflicts:
                self._remove(self.id)
                self.id = ""
                raise LockError(_conflict_message(conflicts))
        self._thread = threading.Thread(target=self._refresh_loop, name="lock-refresh", daemon=True)
        self._thread.start()
        return self

    def _wait_before_recheck(self) -> None:
        if self._meanwhile is None:
            self._sleep(RECHECK_DELAY_S)
            return
        started = time.monotonic()
        try:
            self._meanwhile()
        except BaseException:
            self._remove(self.id)
            self.id = ""
            raise
        left = RECHECK_DELAY_S - (time.monotonic() - started)
        if left > 0:
            self._sleep(left)

    def confirm(self) -> None:
        """Wait for the background re-check (``on_conflict``) and raise the ``LockError`` it found,
        if any: after this returns no competitor holds a lock that excludes ours. Returns at once
        for a lock whose re-check ran in ``acquire``."""
        conflict = self.settled()
        if conflict is not None:
            raise conflict

    def settled(self) -> LockError | None:
        """Wait for the background re-check; the competitor it found, or None (``confirm``
        without raising: a failing command asks it before it writes what it stored)."""
        if self._on_conflict is not None and self._thread is not None:
            self._rechecked.wait()
        return self._conflict

    def _recheck_in_background(self) -> None:
        try:
            if self._stop.wait(RECHECK_DELAY_S) or self._on_conflict is None:
                return  # released first: the command is done
            try:
                conflicts = self._conflicts()
            except Exception as e:  # as `acquire` would have: the lock is not confirmed, stop
                self._conflict = LockError(f"could not re-check the repository's locks: {e}")
            else:
                if conflicts:
                    self._conflict = LockError(_conflict_message(conflicts))
            if self._conflict is not None:
                self._on_conflict(self._conflict)
        finally:
            self._rechecked.set()

    def _refresh_loop(self) -> None:
        if self._on_conflict is not None:
            try:
                self._recheck_in_background()
            except Exception as e:  # an on_conflict that fails must not end the refreshing
                log.warning("lock re-check: %s", e)
        while not self._stop.wait(self.refresh_interval):
            try:
                self.refresh()
            except E3Error as e:
                log.warning("could not refresh lock: %s", e)

    def refresh(self) -> None:
        with self._mu:
            if not self.id:
                return
            old = self.id
            self.id = self._write()
            self._remove(old)

    def _remove(self, lock_id: str) -> None:
        try:
            self.store.remove(Handle(FileType.LOCK, lock_id))
        except NotFoundError:
            pass
        except AccessDeniedError as e:
            # an append-only gateway lets an agent delete only its own locks: a stale lock of
            # another holder stays until the maintenance worker removes it, and is ignored here
            log.warning("stale lock %s left in place: %s", lock_id[:8], e)

    def release(self, failing: bool = False) -> None:
        """Stop refreshing and remove the lock file. ``failing``: an error is ending the command;
        a lock that cannot be removed then (the storage is gone) is only logged at debug, as the
        next command on this host removes it (its process is dead by then)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._mu:
            if self.id:
                try:
                    self._remove(self.id)
                except E3Error as e:
                    # never hide the error that ended the command behind this one
                    log.log(
                        logging.DEBUG if failing else logging.WARNING,
                        "could not remove lock %s (%s); once the storage is back, "
                        "`e3backup unlock` removes it (it is stale once this process has exited)",
                        self.id[:8], e,
                    )
                self.id = ""

    def __enter__(self) -> Lock:
        return self.acquire() if not self.id else self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.release(failing=exc_type is not None)


def _conflict_message(conflicts: list[LockInfo]) -> str:
    lk = conflicts[0]
    stale = " (stale: run `e3backup unlock` to remove it)" if lk.is_stale() else ""
    return f"repository is already locked: {lk.describe()}{stale}"


def _ignore_sighup() -> None:
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
        try:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        except ValueError:
            pass


def _default_sleep(s: float) -> None:
    threading.Event().wait(s)


def _username() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


__all__ = ["Lock", "LockInfo", "list_locks", "remove_stale_locks"]
