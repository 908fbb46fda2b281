"""Polls that arrive together are checked together: one thread hop and one transaction.

A replica's CPU per idle poll was mostly fixed costs: the hop into the thread pool, a connection
checkout (with its liveness ping), three statements through SQLAlchemy and psycopg, a commit.
``PollBatcher`` runs at most ``max_in_flight`` checks at a time (``services.idle_check``: one
statement, in autocommit, on a connection the batcher keeps); polls that arrive meanwhile wait
and go together in the next one. So a quiet replica checks each poll at once, alone, and a busy
one amortises the fixed costs over as many polls as came in during one check, with no timer and
no added delay.

The check only says which polls are idle. A poll with work, or one whose check failed (the
database went away, a deadlock between two batches), is answered by the ordinary handler alone,
as it was before batching; a revoked agent's poll by the app (401).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from e3backup.api.agent import NextRunRequest
from e3backup.api.common import RunKind
from e3backup.server.deps import LAST_SEEN_RESOLUTION, AgentCaller
from e3backup.server.services import idle_check
from e3backup.server.services.idle_check import Poll, Verdict
from e3backup.server.state import ServerState

log = logging.getLogger(__name__)

MAX_BATCH = 64  # polls per check: the IN lists stay short, a failed check sends few back alone
MAX_IN_FLIGHT = 2  # checks at once: one stuck on a row lock does not hold every poll


@dataclass
class _Waiting:
    caller: AgentCaller
    poll: Poll
    verdict: asyncio.Future[Verdict | None]


class PollBatcher:
    """Checks polls in batches; used from the event loop's thread only."""

    def __init__(self, state: ServerState, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.state = state
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[_Waiting] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_connections: list[Connection] = []  # kept open: no checkout and ping per check
        self.batches = 0  # checks run, and polls checked in them: how well the batching works
        self.checked = 0

    async def check(
        self, caller: AgentCaller, commands: bool, kind: RunKind | None = None, body: NextRunRequest | None = None
    ) -> Verdict | None:
        """The poll's verdict; None if its check failed (answer it as if unbatched)."""
        now = self.state.clock.now()
        due = caller.last_seen_at is None or now - caller.last_seen_at >= LAST_SEEN_RESOLUTION
        poll = Poll(caller.id, caller.tenant_id, due, commands, kind, body)
        waiting = _Waiting(caller, poll, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._in_flight < self.max_in_flight:
            self._start_next()
        return await waiting.verdict

    def queued(self) -> int:
        """Polls waiting for a check to finish before theirs starts."""
        return len(self._waiting)

    def _start_next(self) -> None:
        batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)  # a reference, so the task is not collected mid-way
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        verdicts: Sequence[Verdict | None] = [None] * len(batch)
        conn = self._idle_connections.pop() if self._idle_connections else None
        try:
            kept, now, verdicts = await run_in_threadpool(self._check, conn, [w.poll for w in batch])
            self._idle_connections.append(kept)
            self._remember(batch, verdicts, now)
            self.batches += 1
            self.checked += len(batch)
        except Exception:
            log.warning(
                "a batch of %d agent polls could not be checked; they are answered one by one",
                len(batch),
                exc_info=True,
            )
        finally:
            self._in_flight -= 1
            for waiting, verdict in zip(batch, verdicts, strict=True):
                if not waiting.verdict.done():
                    waiting.verdict.set_result(verdict)
            while self._waiting and self._in_flight < self.max_in_flight:
                self._start_next()

    def _check(self, conn: Connection | None, polls: list[Poll]) -> tuple[Connection, datetime, list[Verdict]]:
        if conn is None:
            conn = self.state.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        now = self.state.clock.now()
        try:
            verdicts = idle_check.check(conn, polls, now)
            conn.commit()  # nothing to send in autocommit; ends SQLAlchemy's own transaction
        except BaseException:
            conn.close()  # back to the pool, which checks it before its next use
            raise
        return conn, now, verdicts

    def close(self) -> None:
        """Returns the kept connections to the pool (the app's shutdown)."""
        while self._idle_connections:
            self._idle_connections.pop().close()

    def _remember(self, batch: list[_Waiting], verdicts: Sequence[Verdict | None], now: datetime) -> None:
        """The token cache learns what the check wrote, as after ``deps.agent_transaction``."""
        tokens = self.state.agent_tokens
        for waiting, verdict in zip(batch, verdicts, strict=True):
            if verdict is Verdict.REFUSED:
                tokens.forget_agent(waiting.caller.id)
            elif waiting.poll.due:
                tokens.seen(waiting.caller.token_hash, now)


__all__ = ["MAX_BATCH", "MAX_IN_FLIGHT", "PollBatcher"]
