"""Agent tokens this process has seen recently, so an agent's call costs no token lookup.

An agent polls every 30-60 s and reports every few seconds while it runs; looking its token up
in the database on every call was a round trip and an ORM object per request. The cache maps a
token's SHA-256 to the agent's id and tenant (never the token itself) for ``ttl`` seconds.

Revocation still takes effect at once: a commit that revokes an agent (or changes its token)
carries the key ``agent:<id>`` on the commit bus (``cluster.bus``), which drops that agent here,
in this process at the commit and on every other replica when its ``LISTEN`` connection receives
the notification. When that connection is lost and comes back the whole cache is dropped
(notifications may have been missed). And the cache only says whose token it is: every agent
call that uses it opens its work with one statement on the agent's row that is conditional on the
agent not being revoked (``deps.agent_transaction``: the ``last_seen_at`` write when due, else a
read it needs anyway), so even a change made outside the server (``UPDATE agents`` in psql) is
refused on the next call. ``ttl`` (an hour) only bounds the memory of agents gone quiet. Unknown
tokens are never cached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

AGENT_KEY_PREFIX = "agent:"
DEFAULT_TTL_SECONDS = 3600.0
MAX_ENTRIES = 200_000  # ~20,000 agents per replica is the goal; a bound all the same


def agent_key(agent_id: int) -> str:
    """The commit bus key of a change to an agent's credentials."""
    return f"{AGENT_KEY_PREFIX}{agent_id}"


@dataclass
class KnownAgent:
    agent_id: int
    tenant_id: int
    last_seen_at: datetime | None  # as last read or written by this process
    cached_at: float  # time.monotonic()


class AgentTokenCache:
    """Thread-safe; request threads read and fill it, the bus's listener thread empties it."""

    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._by_hash: dict[str, KnownAgent] = {}
        self._generation = 0  # bumped by every invalidation: a lookup that raced one is not kept

    def generation(self) -> int:
        """Take before reading the database; pass to :meth:`put`."""
        with self._lock:
            return self._generation

    def get(self, token_hash: str) -> KnownAgent | None:
        with self._lock:
            known = self._by_hash.get(token_hash)
            if known is not None and self._monotonic() - known.cached_at > self.ttl:
                del self._by_hash[token_hash]
                return None
            return known

    def put(self, token_hash: str, agent_id: int, tenant_id: int, last_seen_at: datetime | None,
            generation: int) -> None:
        """Remember a live agent read from the database, unless an invalidation came since
        ``generation`` was taken (the row read may predate a revocation)."""
        with self._lock:
            if generation != self._generation:
                return
            if len(self._by_hash) >= MAX_ENTRIES:
                self._by_hash.clear()
            self._by_hash[token_hash] = KnownAgent(agent_id, tenant_id, last_seen_at, self._monotonic())

    def seen(self, token_hash: str, at: datetime) -> None:
        """The agent's ``last_seen_at`` was written (on the condition it is not revoked): the
        entry is as good as freshly read."""
        with self._lock:
            known = self._by_hash.get(token_hash)
            if known is not None:
                known.last_seen_at = at
                known.cached_at = self._monotonic()

    def forget_agent(self, agent_id: int) -> None:
        with self._lock:
            self._generation += 1
            for token_hash in [h for h, k in self._by_hash.items() if k.agent_id == agent_id]:
                del self._by_hash[token_hash]

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._by_hash.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_hash)

    def on_wake(self, key: str | None) -> None:
        """A commit bus wake-up: ``agent:<id>`` drops that agent; ``None`` (the bus reconnected,
        notifications may be lost) drops everything."""
        if key is None:
            self.clear()
        elif key.startswith(AGENT_KEY_PREFIX):
            self.forget_agent(int(key.removeprefix(AGENT_KEY_PREFIX)))


__all__ = ["AGENT_KEY_PREFIX", "AgentTokenCache", "KnownAgent", "agent_key"]
