"""Polls that arrive together are checked together: one thread hop and one transaction.

``PollBatcher`` checks polls through a ``Coalescer`` (at most ``max_in_flight`` checks at a time;
polls that arrive meanwhile go together into the next), each check one statement
(``services.idle_check``), in autocommit, on a connection the batcher keeps.

The check only says which polls are idle. A poll with work, or one whose check failed (the
database went away, a deadlock between two batches), is answered by the ordinary handler alone,
as it was before batching; a revoked agent's poll by the app (401).
"""

from __future__ import annotations

import threading
from datetime import datetime

from sqlalchemy import Connection

from e3backup.api.agent import NextRunRequest
from e3backup.api.common import RunKind
from e3backup.server.coalesce import Coalescer
from e3backup.server.deps import LAST_SEEN_RESOLUTION, AgentCaller
from e3backup.server.services import idle_check
from e3backup.server.services.idle_check import Poll, Verdict
from e3backup.server.state import ServerState

MAX_BATCH = 64  # polls per check: the IN lists stay short, a failed check sends few back alone
MAX_IN_FLIGHT = 2  # checks at once: one stuck on a row lock does not hold every poll


class PollBatcher:
    """Checks polls in batches; ``check`` is called from the event loop's thread."""

    def __init__(self, state: ServerState, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.state = state
        self._coalescer: Coalescer[tuple[AgentCaller, Poll], Verdict] = Coalescer(
            self._check, "agent polls", max_batch=max_batch, max_in_flight=max_in_flight
        )
        self._mu = threading.Lock()
        self._idle_connections: list[Connection] = []  # kept open: no checkout and ping per check
        self._closed = False

    @property
    def max_in_flight(self) -> int:
        return self._coalescer.max_in_flight

    @max_in_flight.setter
    def max_in_flight(self, n: int) -> None:
        self._coalescer.max_in_flight = n

    @property
    def batches(self) -> int:
        """Checks run."""
        return self._coalescer.batches

    @property
    def checked(self) -> int:
        """Polls checked in them."""
        return self._coalescer.served

    async def check(
        self, caller: AgentCaller, commands: bool, kind: RunKind | None = None, body: NextRunRequest | None = None
    ) -> Verdict | None:
        """The poll's verdict; None if its check failed (answer it as if unbatched)."""
        now = self.state.clock.now()
        due = caller.last_seen_at is None or now - caller.last_seen_at >= LAST_SEEN_RESOLUTION
        return await self._coalescer.submit((caller, Poll(caller.id, caller.tenant_id, due, commands, kind, body)))

    def queued(self) -> int:
        """Polls waiting for a check to finish before theirs starts."""
        return self._coalescer.queued()

    def _check(self, batch: list[tuple[AgentCaller, Poll]]) -> list[Verdict]:
        with self._mu:
            conn = self._idle_connections.pop() if self._idle_connections else None
        if conn is None:
            conn = self.state.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        now = self.state.clock.now()
        try:
            verdicts = idle_check.check(conn, [poll for _, poll in batch], now)
            conn.commit()  # nothing to send in autocommit; ends SQLAlchemy's own transaction
        except BaseException:
            conn.close()  # back to the pool, which checks it before its next use
            raise
        with self._mu:
            if self._closed:  # a check that outlasted the shutdown: nobody would close it later
                conn.close()
            else:
                self._idle_connections.append(conn)
        self._remember(batch, verdicts, now)
        return verdicts

    def close(self) -> None:
        """Starts no more checks and returns the kept connections to the pool (the app's shutdown)."""
        self._coalescer.close()
        with self._mu:
            self._closed = True
            while self._idle_connections:
                self._idle_connections.pop().close()

    def _remember(self, batch: list[tuple[AgentCaller, Poll]], verdicts: list[Verdict], now: datetime) -> None:
        """The token cache learns what the check wrote, as after ``deps.agent_transaction``."""
        tokens = self.state.agent_tokens
        for (caller, poll), verdict in zip(batch, verdicts, strict=True):
            if verdict is Verdict.REFUSED:
                tokens.forget_agent(caller.id)
            elif poll.due:
                tokens.seen(caller.token_hash, now)


__all__ = ["MAX_BATCH", "MAX_IN_FLIGHT", "PollBatcher"]
