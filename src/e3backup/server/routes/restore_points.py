"""Restore points as JSON: the snapshots of a machine or a job, each with its proof of restore."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from e3backup.api.common import Id
from e3backup.server.db.models import Agent, Job, Run
from e3backup.server.deps import CurrentUser, SessionDep, can_see_tenant
from e3backup.server.services import restore_points as svc

router = APIRouter(prefix="/api/restore-points", tags=["restore points"])


@router.get("")
def list_restore_points(
    session: SessionDep,
    user: CurrentUser,
    agent_id: Id | None = None,
    job_id: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=svc.LIMIT)] = 100,
) -> list[dict[str, Any]]:
    """Newest first; ``proof`` is the snapshot's newest proof of restore (null: none)."""
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or not can_see_tenant(user, agent.tenant_id):
            raise HTTPException(status_code=404, detail=f"agent {agent_id} not found")
    if job_id is not None:
        job = session.get(Job, job_id)
        if job is None or not can_see_tenant(user, job.tenant_id):
            raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    query = svc.query(agent_id, job_id, limit)
    if not user.is_admin:
        query = query.where(Run.tenant_id == (user.tenant_id or 0))
    runs = list(session.scalars(query))
    job_ids = {r.job_id for r in runs if r.job_id is not None}
    jobs = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
    agent_ids = {r.agent_id for r in runs if r.agent_id is not None}
    hosts = {a.id: a.hostname for a in session.scalars(select(Agent).where(Agent.id.in_(agent_ids)))}
    return [svc.public(p, hosts.get(p["run"].agent_id)) for p in svc.points(session, runs, jobs)]


__all__ = ["router"]
