"""The audit log: who did what, when. One call, :func:`record`, used by every service and
route that changes something or shows something sensitive (sign-ins, job changes, restores,
downloads, recoveries). Entries go into the caller's transaction: an action that rolls back
leaves no entry, one that commits always has its entry.

Actions are dotted names, ``<thing>.<verb>``: ``auth.login``, ``auth.login_failed``,
``auth.logout``, ``job.create``, ``job.update``, ``job.delete``, ``job.run``, ``run.cancel``,
``agent.rename``... Details never hold secrets (the caller passes what is safe to show).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from e3backup.server.db.models import AuditEvent, User


def record(
    session: Session,
    now: datetime,
    action: str,
    *,
    user: User | None = None,
    actor: str | None = None,
    tenant_id: int | None = None,
    target_type: str | None = None,
    target_id: int | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one entry to the session (committed with the caller's transaction).

    ``user`` is who acted (its email becomes ``actor`` unless given); ``tenant_id`` whose data it
    concerns (defaults to the user's tenant; ``None``: the MSP's own business).
    """
    event = AuditEvent(
        ts=now,
        tenant_id=tenant_id if tenant_id is not None else (user.tenant_id if user is not None else None),
        user_id=user.id if user is not None else None,
        actor=actor if actor is not None else (user.email if user is not None else ""),
        action=action,
        target_type=target_type,
        target_id=target_id,
        ip=ip,
        details=dict(details or {}),
    )
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: int | None = None
    action: str | None = None  # exact, or a prefix ending in "." ("job.")
    user_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None


def _aware(when: datetime) -> datetime:
    """A time without a zone is taken as UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _filtered(query: Select[Any], f: AuditFilter, visible_tenant: int | None, is_admin: bool) -> Select[Any]:
    if not is_admin:
        query = query.where(AuditEvent.tenant_id == visible_tenant)
    elif f.tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == f.tenant_id)
    if f.action:
        if f.action.endswith("."):
            query = query.where(AuditEvent.action.startswith(f.action))
        else:
            query = query.where(AuditEvent.action == f.action)
    if f.user_id is not None:
        query = query.where(AuditEvent.user_id == f.user_id)
    if f.since is not None:
        query = query.where(AuditEvent.ts >= _aware(f.since))
    if f.until is not None:
        query = query.where(AuditEvent.ts < _aware(f.until))
    return query


def entries(
    session: Session, viewer: User, f: AuditFilter, offset: int = 0, limit: int = 100
) -> tuple[list[AuditEvent], int]:
    """A page of entries the viewer may see (MSP staff: all; tenant users: their tenant's),
    newest first, and the total count."""
    query = _filtered(select(AuditEvent), f, viewer.tenant_id, viewer.is_admin)
    total = session.scalar(_filtered(select(func.count(AuditEvent.id)), f, viewer.tenant_id, viewer.is_admin)) or 0
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).offset(offset).limit(limit))
    return list(rows), total


__all__ = ["AuditFilter", "entries", "record"]
