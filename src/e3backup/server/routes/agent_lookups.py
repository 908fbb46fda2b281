"""Agents' first calls to this process, looked up together: one thread hop and one query.

An agent's token is looked up once per process and then served from the token cache. After a
restart every agent's next poll is such a first call, and one by one (a thread hop, a session,
a query each) a replica with 20,000 agents fell ~27 s behind for the first minute. Lookups that
arrive together now go into one ``SELECT ... WHERE token_hash IN (...)`` through a ``Coalescer``:
``deps.look_up_agents``, the lookup the app's own routes make for a single token.
"""

from __future__ import annotations

from functools import partial

from e3backup.server.coalesce import Coalescer
from e3backup.server.deps import AgentCaller, look_up_agents
from e3backup.server.state import ServerState

MAX_BATCH = 128  # tokens per query
MAX_IN_FLIGHT = 2


class AgentLookups:
    """``await look_up(token, token_hash)``: the live agent whose token it is (remembered in the
    token cache), or None for an unknown or revoked token and when the lookup failed (the app
    then looks it up alone and answers, 401 or its error)."""

    def __init__(self, state: ServerState, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.state = state
        self._coalescer: Coalescer[tuple[str, str], AgentCaller | None] = Coalescer(
            partial(look_up_agents, state), "agent token lookups", max_batch=max_batch, max_in_flight=max_in_flight
        )

    @property
    def batches(self) -> int:
        return self._coalescer.batches

    @property
    def looked_up(self) -> int:
        return self._coalescer.served

    async def look_up(self, token: str, token_hash: str) -> AgentCaller | None:
        return await self._coalescer.submit((token, token_hash))

    def close(self) -> None:
        """Starts no more lookups (the app's shutdown)."""
        self._coalescer.close()


__all__ = ["AgentLookups"]
