"""The audit log, read-only: MSP staff see every entry, a tenant's administrators their
tenant's (the same permission as managing the tenant's users)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from e3backup.api.common import Id
from e3backup.server.deps import SessionDep, UsersAdmin
from e3backup.server.schemas import AuditEventPublic, AuditPage
from e3backup.server.services import audit as svc

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("")
def list_audit(
    session: SessionDep,
    user: UsersAdmin,
    tenant_id: Id | None = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    user_id: Id | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """Entries newest first; ``action`` is exact or a prefix ending in ``.`` (``job.``)."""
    rows, total = svc.entries(
        session, user, svc.AuditFilter(tenant_id, action, user_id, since, until), offset, limit
    )
    return AuditPage(total=total, offset=offset, items=[AuditEventPublic.model_validate(r) for r in rows])
