"""Everything a request needs besides its session, built once per app by the factory."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from e3backup.server.clock import Clock
from e3backup.server.cluster.bus import Bus, Wakeups
from e3backup.server.config import Settings
from e3backup.server.security import PasswordHasher, SecretBox
from e3backup.server.security.agent_tokens import AgentTokenCache
from e3backup.server.security.ratelimit import RateLimiter


@dataclass
class ServerState:
    settings: Settings
    clock: Clock
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    passwords: PasswordHasher
    login_limiter: RateLimiter
    enroll_limiter: RateLimiter
    waiters: Wakeups  # requests waiting for a run or a command to change (see cluster.bus)
    bus: Bus
    # agents' token hashes -> id, so their frequent calls need no lookup (dropped on revocation)
    agent_tokens: AgentTokenCache = field(default_factory=AgentTokenCache)

    def __post_init__(self) -> None:
        self.waiters.watchers.append(self.agent_tokens.on_wake)


__all__ = ["ServerState"]
