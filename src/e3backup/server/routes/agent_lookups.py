"""Agents' first calls to this process, looked up together: one thread hop and one query.

An agent's token is looked up once per process and then served from the token cache. After a
restart every agent's next poll is such a first call, and one by one (a thread hop, a session,
a query each) a replica with 20,000 agents fell ~27 s behind for the first minute. Lookups that
arrive together now go into one ``SELECT ... WHERE token_hash IN (...)`` (``Coalescer``).
"""

from __future__ import annotations

from sqlalchemy import bindparam, select

from e3backup.server.coalesce import Coalescer
from e3backup.server.db.models import Agent
from e3backup.server.deps import AgentCaller
from e3backup.server.state import ServerState

MAX_BATCH = 128  # tokens per query
MAX_IN_FLIGHT = 2

_LIVE_BY_HASH = select(Agent.token_hash, Agent.id, Agent.tenant_id, Agent.last_seen_at).where(
    Agent.token_hash.in_(bindparam("hashes", expanding=True)), Agent.revoked.is_(False)
)


class AgentLookups:
    """``await look_up(token, token_hash)``: the live agent whose token it is (remembered in the
    token cache), or None for an unknown or revoked token and when the lookup failed (the app
    then looks it up alone and answers, 401 or its error)."""

    def __init__(self, state: ServerState, max_batch: int = MAX_BATCH, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.state = state
        self._coalescer: Coalescer[tuple[str, str], AgentCaller | None] = Coalescer(
            self._look_up, "agent token lookups", max_batch=max_batch, max_in_flight=max_in_flight
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

    def _look_up(self, batch: list[tuple[str, str]]) -> list[AgentCaller | None]:
        tokens = self.state.agent_tokens
        generation = tokens.generation()  # before the read: a revocation meanwhile is not cached
        with self.state.engine.connect() as conn:
            rows = {r.token_hash: r for r in conn.execute(_LIVE_BY_HASH, {"hashes": sorted({h for _, h in batch})})}
        out: list[AgentCaller | None] = []
        for token, token_hash in batch:
            row = rows.get(token_hash)
            if row is None:
                out.append(None)
                continue
            tokens.put(token_hash, row.id, row.tenant_id, row.last_seen_at, generation)
            out.append(AgentCaller(row.id, row.tenant_id, token, token_hash, row.last_seen_at))
        return out


__all__ = ["AgentLookups"]
