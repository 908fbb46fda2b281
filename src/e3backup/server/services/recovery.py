"""Recovery sessions: a token scoped to one restore run, with a sliding expiry.

Activity extends the expiry to now + 6 h, but writes only when the current expiry is within
30 minutes, so a console polling every few seconds does not write on every call.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from e3backup.api.recovery import SESSION_EXTENSION_HOURS, SESSION_REFRESH_THRESHOLD_MINUTES
from e3backup.server.db.models import RecoverySession, Run
from e3backup.server.security.tokens import RECOVERY, hash_token, new_token

EXTENSION = timedelta(hours=SESSION_EXTENSION_HOURS)
REFRESH_THRESHOLD = timedelta(minutes=SESSION_REFRESH_THRESHOLD_MINUTES)


def touch(row: RecoverySession, now: datetime) -> bool:
    """Slide the expiry if it is within the threshold; True if it changed (needs a write)."""
    if row.expires_at - now <= REFRESH_THRESHOLD:
        row.expires_at = now + EXTENSION
        return True
    return False


def create_session(
    session: Session, run: Run, user_id: int | None, now: datetime
) -> tuple[RecoverySession, str]:
    token = new_token(RECOVERY)
    row = RecoverySession(
        tenant_id=run.tenant_id,
        run_id=run.id,
        token_hash=hash_token(token),
        created_by=user_id,
        created_at=now,
        expires_at=now + EXTENSION,
    )
    session.add(row)
    session.flush()
    return row, token


__all__ = ["EXTENSION", "REFRESH_THRESHOLD", "create_session", "touch"]
