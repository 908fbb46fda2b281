"""Proofs of restore as users see them: the list (per job or run) and each proof's screenshot.

Both answer only for the user's tenants (another tenant's proof is 404, as a missing one is).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from sqlalchemy import select

from e3backup.api.common import Id
from e3backup.api.proofs import ProofView
from e3backup.server.db.models import Proof
from e3backup.server.deps import CurrentUser, SessionDep, can_see_tenant
from e3backup.server.services import proofs as svc

router = APIRouter(prefix="/api/proofs", tags=["proofs"])


@router.get("")
def list_proofs(
    session: SessionDep,
    user: CurrentUser,
    job_id: Id | None = None,
    run_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ProofView]:
    """Newest first."""
    query = select(Proof).order_by(Proof.finished_at.desc(), Proof.id.desc()).limit(limit)
    if not user.is_admin:
        query = query.where(Proof.tenant_id == (user.tenant_id or 0))
    if job_id is not None:
        query = query.where(Proof.job_id == job_id)
    if run_id is not None:
        query = query.where(Proof.run_id == run_id)
    return [svc.view(p) for p in session.scalars(query)]


@router.get("/{proof_id}/screenshot.png")
def screenshot(proof_id: Id, session: SessionDep, user: CurrentUser) -> Response:
    """The guest's screen the boot proof took (PNG)."""
    proof = session.get(Proof, proof_id)
    if proof is None or not can_see_tenant(user, proof.tenant_id) or not proof.screenshot:
        raise HTTPException(status_code=404, detail=f"no screenshot of proof {proof_id}")
    return Response(proof.screenshot, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


__all__ = ["router"]
