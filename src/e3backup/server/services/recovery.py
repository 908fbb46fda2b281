"""Recovery sessions: a token scoped to one restore run, with a sliding expiry.

Activity extends the expiry to now + 6 h, but writes only when the current expiry is within
30 minutes, so a console polling every few seconds does not write on every call.

A session ends (:func:`ended`) when its run reaches a final state, when the user who made it is
disabled or gone, and when an administrator revokes it (:func:`revoke`; the run, if still
going, is then cancelled: nobody can report on it any more).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from e3backup.api.common import FINAL_RUN_STATUSES, RunStatus
from e3backup.api.recovery import SESSION_EXTENSION_HOURS, SESSION_REFRESH_THRESHOLD_MINUTES
from e3backup.server.db.models import RecoverySession, Run, User
from e3backup.server.security.tokens import RECOVERY, hash_token, new_token

EXTENSION = timedelta(hours=SESSION_EXTENSION_HOURS)
REFRESH_THRESHOLD = timedelta(minutes=SESSION_REFRESH_THRESHOLD_MINUTES)


def touch(row: RecoverySession, now: datetime) -> bool:
    """Slide the expiry if it is within the threshold; True if it changed (needs a write)."""
    if row.expires_at - now <= REFRESH_THRESHOLD:
        row.expires_at = now + EXTENSION
        return True
    return False


def ended(session: Session, row: RecoverySession) -> str | None:
    """Why the session no longer works, or None if it does."""
    run = session.get(Run, row.run_id)
    if run is None or run.status in FINAL_RUN_STATUSES:
        return "its restore run has finished"
    creator = session.get(User, row.created_by) if row.created_by is not None else None
    if creator is None or creator.disabled:
        return "the user who started it is disabled or gone"
    return None


def revoke(session: Session, run: Run, now: datetime) -> int:
    """End every session of ``run``; a run not yet finished is cancelled. Returns the count."""
    count = session.execute(delete(RecoverySession).where(RecoverySession.run_id == run.id)).rowcount  # type: ignore[attr-defined]
    if run.status not in FINAL_RUN_STATUSES:
        run.status = RunStatus.CANCELLED.value
        run.finished_at = now
        run.error_summary = "recovery session revoked"
    return int(count or 0)


def end_sessions_of(session: Session, user_id: int) -> None:
    session.execute(delete(RecoverySession).where(RecoverySession.created_by == user_id))


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


__all__ = ["EXTENSION", "REFRESH_THRESHOLD", "create_session", "end_sessions_of", "ended", "revoke", "touch"]
