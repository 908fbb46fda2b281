"""A competitor that locks "at the same moment": the race the lock's re-check exists for."""

from __future__ import annotations

import threading

import pytest

from e3backup.repo import Repository
from e3backup.repo.lock import Lock, LockInfo


def prune_locks_with_the_next_run(
    monkeypatch: pytest.MonkeyPatch, repo: Repository, recheck_after: threading.Event
) -> list[str]:
    """The next shared lock written to ``repo``'s store is followed at once by a competitor's
    exclusive lock (a prune), and that shared lock's re-check waits for ``recheck_after`` (however
    slowly the run gets going on a loaded machine). Returns the list the competitor's lock ID is
    put in, to remove it once the run has failed."""
    monkeypatch.setattr("e3backup.repo.lock.RECHECK_DELAY_S", 0.01)
    write, conflicts = Lock._write, Lock._conflicts
    competitor: list[str] = []

    def and_a_prune_at_the_same_moment(self: Lock) -> str:
        lock_id = write(self)
        if not self.exclusive and not competitor:
            competitor.append(write(Lock(repo.store, repo.key, exclusive=True)))
        return lock_id

    def held_recheck(self: Lock) -> list[LockInfo]:
        if self.id:  # the re-check (the up-front check runs before our lock is written)
            assert recheck_after.wait(30)
        return conflicts(self)

    monkeypatch.setattr(Lock, "_write", and_a_prune_at_the_same_moment)
    monkeypatch.setattr(Lock, "_conflicts", held_recheck)
    return competitor
