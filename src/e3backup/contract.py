"""The run contract every engine and restore follows.

    run_x(repo, options, progress, on_event, cancel) -> result

- ``options``: a typed, frozen-enough value (a dataclass) holding everything the run needs.
  Policy flags, environment variables and CLI flags are resolved into it at the edges (the
  agent's dispatch table, the CLI commands); an engine never reads a policy dict or the
  environment itself.
- ``progress``: a :class:`~e3backup.progress.Progress` the run updates through its methods.
- ``on_event``: where the run's events go (``REPOSITORY_*``, ``DISK_IMAGE_*``...), as they
  happen; the agent forwards them to the server, the CLI ignores them.
- ``cancel``: a :class:`threading.Event`; once set, the run stops within seconds by raising
  :class:`~e3backup.errors.Cancelled` (whose message says what was left behind).
- ``result``: a dataclass with ``summary_json()``.

A new engine is a new ``run_x`` plus an entry in the agent's dispatch table
(``agent/engines.py``); nothing else in the agent changes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import Cancelled, LockError
from .events import Event, EventCode, Level
from .progress import Progress

if TYPE_CHECKING:  # annotations only: the idle agent imports the contract without the repository
    from .repo.lock import Lock
    from .repo.repository import Repository
    from .repo.writer import WriterStats

OnEvent = Callable[[Event], None]
"""The events sink of a run."""

Cancel = threading.Event
"""Set by the caller to stop a run; the run raises ``Cancelled``."""

O_contra = TypeVar("O_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class RunFn(Protocol[O_contra, R_co]):
    """The shape of ``run_x`` (positional: each engine names its options as it likes)."""

    def __call__(
        self,
        repo: Repository,
        options: O_contra,
        progress: Progress | None = None,
        on_event: OnEvent | None = None,
        cancel: Cancel | None = None,
        /,
    ) -> R_co: ...


def no_events(_event: Event) -> None:
    """The sink of a run nobody listens to (the CLI)."""


def emit(on_event: OnEvent | None, code: EventCode, message: str, level: Level | None = None,
         **details: Any) -> None:
    """Send one event to ``on_event`` if there is a listener."""
    if on_event is not None:
        on_event(Event(code, message, level, details))


def index_written(on_event: OnEvent | None, stats: WriterStats) -> None:
    """``REPOSITORY_INDEX_WRITTEN`` once a backup's packs and index are flushed: one wording and
    one set of details for every engine that writes through a ``BlobWriter``."""
    emit(on_event, EventCode.REPOSITORY_INDEX_WRITTEN,
         f"index written: {stats.packs} new pack(s) in {stats.index_files} index file(s)",
         packs=stats.packs, index_files=stats.index_files)


def check_cancel(cancel: Cancel | None, message: str) -> None:
    """Raise ``Cancelled(message)`` if the run was asked to stop."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(message)


@contextlib.contextmanager
def writing_lock(repo: Repository, cancel: Cancel) -> Iterator[Lock]:
    """The shared lock of a run that stores packs, then an index and a snapshot (a backup).

    The lock's 200 ms re-check for a competitor that locked at the same moment (restic's
    protocol) runs in the background while the run works instead of before it. The packs stored
    meanwhile count only once an index names them, so the run calls ``lock.confirm()`` before its
    index, and after a failure indexes what it stored only if ``lock.settled()`` is None (never
    behind a prune's back: the next run adopts them). A competitor found sets ``cancel``; the
    ``Cancelled`` that stops the run becomes that ``LockError``."""
    conflict: list[LockError] = []

    def on_conflict(e: LockError) -> None:
        conflict.append(e)
        cancel.set()

    with repo.lock(on_conflict=on_conflict) as lock:
        try:
            yield lock
        except Cancelled as e:
            if conflict:
                raise conflict[0] from e
            raise


__all__ = ["Cancel", "OnEvent", "RunFn", "check_cancel", "emit", "index_written", "no_events", "writing_lock"]
