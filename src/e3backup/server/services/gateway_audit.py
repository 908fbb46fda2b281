"""Refused gateway requests in the audit log, coalesced so that a flood cannot flood the log.

Two actions: ``gateway.refused`` (a known token asked for what it has no right to: a delete, an
overwrite, a write with a read-only token; answered 403) and ``gateway.wrong_token`` (a token
with no grant on the repository it asked for: unknown, revoked, expired, or another agent's;
answered 404). A request without a token (401) is not recorded: it is every client's first
knock, not an attempt with a stolen key.

Coalescing: within ``WINDOW`` the attempts of one source (who, the repository, the address)
are one entry whose ``attempts`` count and ``last`` time are raised, not a new entry each time;
past ``CAP`` entries of these actions in a window (many sources at once), further sources are
counted on one entry of the actor ``(many sources)``. So a script hammering the gateway adds at
most ``CAP + 1`` entries per window of each action, however fast or widely spread it is, and
the count of its attempts stays exact on those entries. Entries are found in the database, so
every replica coalesces onto the same ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from e3backup.server.db.models import AuditEvent
from e3backup.server.services import audit

REFUSED = "gateway.refused"
WRONG_TOKEN = "gateway.wrong_token"
WINDOW = timedelta(minutes=10)
CAP = 50  # distinct sources a window records one by one, per action
MANY = "(many sources)"


def note(session: Session, now: datetime, action: str, *, who: str, tenant_id: int | None, job_id: int,
         ip: str | None, details: dict[str, Any]) -> AuditEvent:
    """Record one refused attempt (into the caller's transaction), onto its source's entry of the
    current window when there is one."""
    recent = select(AuditEvent).where(AuditEvent.action == action, AuditEvent.ts >= now - WINDOW)
    same_ip = AuditEvent.ip == ip if ip is not None else AuditEvent.ip.is_(None)
    entry = _latest(session, recent.where(AuditEvent.actor == who, AuditEvent.target_type == "repository",
                                          AuditEvent.target_id == job_id, same_ip))
    if entry is not None:
        return _bump(session, entry, now)
    sources = session.scalar(select(func.count()).select_from(recent.subquery())) or 0
    if sources < CAP:
        return audit.record(session, now, action, actor=who, tenant_id=tenant_id, target_type="repository",
                            target_id=job_id, ip=ip, details={**details, **_first(now)})
    overflow = _latest(session, recent.where(AuditEvent.actor == MANY))
    if overflow is not None:
        return _bump(session, overflow, now)
    return audit.record(session, now, action, actor=MANY, details={
        "note": f"more than {CAP} sources in {int(WINDOW.total_seconds() // 60)} minutes; counted here",
        **_first(now)})


def _latest(session: Session, query: Select[Any]) -> AuditEvent | None:
    return session.scalars(query.order_by(AuditEvent.id.desc()).limit(1)).first()


def _first(now: datetime) -> dict[str, Any]:
    return {"attempts": 1, "last": now.isoformat(timespec="seconds")}


def _bump(session: Session, entry: AuditEvent, now: datetime) -> AuditEvent:
    entry.details = {**entry.details, "attempts": int(entry.details.get("attempts", 1)) + 1,
                     "last": now.isoformat(timespec="seconds")}
    session.flush()
    return entry


__all__ = ["CAP", "MANY", "REFUSED", "WINDOW", "WRONG_TOKEN", "note"]
