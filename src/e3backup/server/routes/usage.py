"""Storage usage per repository, tenant and job (``services.usage``), as JSON and CSV."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from e3backup.server.deps import ManagerUser, SessionDep, StateDep
from e3backup.server.services import usage as svc

router = APIRouter(prefix="/api/usage", tags=["usage"])


def _rows(session: SessionDep, state: StateDep, user: ManagerUser) -> list[svc.RepositoryUsage]:
    tenants = None if user.is_admin else [user.tenant_id or 0]
    return svc.report(session, state.box, list(state.settings.browse_local_roots), tenants)


@router.get("")
def usage(session: SessionDep, state: StateDep, user: ManagerUser) -> list[dict[str, Any]]:
    return [
        {"tenant_id": r.tenant_id, "tenant": r.tenant, "repository": r.where, "stored_bytes": r.stored_bytes,
         "plaintext_bytes": r.plaintext_bytes, "blobs": r.blobs, "protected_bytes": r.protected_bytes,
         "jobs": [{"id": i, "name": n, "protected_bytes": b} for i, n, b in r.jobs], "error": r.error}
        for r in _rows(session, state, user)
    ]


@router.get(".csv")
def usage_csv(session: SessionDep, state: StateDep, user: ManagerUser) -> Response:
    return Response(svc.to_csv(_rows(session, state, user)), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="e3backup-usage.csv"'})
