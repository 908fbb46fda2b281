"""The server's own read-only gateway tokens (``e3d_``), for reading a gateway-mode repository
on a dashboard user's behalf (browse, preview, file and ZIP/tar downloads).

One token per opening of the repository: issued (committed, so the gateway's own session sees
it) just before, deleted just after. The gateway grants it **read** on that one job
(``gateway.access``), like a recovery session's token; ``expires_at`` only bounds a token a
crashed process did not delete, and expired rows are swept on the next issue.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from e3backup.server.db.models import GatewayReadToken
from e3backup.server.security.tokens import READER, hash_token, new_token

LIFETIME = timedelta(hours=24)  # a download of a large selection may stream for hours


def issue(sessions: sessionmaker[Session], now: datetime, job_id: int, user_id: int | None) -> str:
    token = new_token(READER)
    with sessions() as session:
        session.execute(delete(GatewayReadToken).where(GatewayReadToken.expires_at <= now))
        session.add(GatewayReadToken(job_id=job_id, user_id=user_id, token_hash=hash_token(token), created_at=now,
                                     expires_at=now + LIFETIME))
        session.commit()
    return token


def revoke(sessions: sessionmaker[Session], token: str) -> None:
    with sessions() as session:
        session.execute(delete(GatewayReadToken).where(GatewayReadToken.token_hash == hash_token(token)))
        session.commit()


__all__ = ["LIFETIME", "issue", "revoke"]
