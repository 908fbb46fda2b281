"""Restore points: every snapshot of a machine or of a job, newest first, with what it holds and
whether its proof of restore passed (``services.restore_points``)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from e3backup.api.common import Id
from e3backup.server.db.models import Agent, Job, Run
from e3backup.server.deps import SessionDep, can_see_tenant
from e3backup.server.services import restore_points as svc
from e3backup.server.web.deps import PageDep

router = APIRouter(include_in_schema=False)


@router.get("/restore-points", response_class=HTMLResponse)
def restore_points(page: PageDep, session: SessionDep, agent_id: Id | None = None,
                   job_id: Id | None = None) -> HTMLResponse:
    agent = job = None
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or not can_see_tenant(page.user, agent.tenant_id):
            raise HTTPException(status_code=404, detail=f"agent {agent_id} not found")
    if job_id is not None:
        job = session.get(Job, job_id)
        if job is None or not can_see_tenant(page.user, job.tenant_id):
            raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    runs = list(session.scalars(page.scope.where(svc.query(agent_id, job_id), Run.tenant_id)))
    jobs = {j.id: j for j in session.scalars(page.scope.where(select(Job), Job.tenant_id))}
    hosts = {a.id: a.hostname for a in session.scalars(page.scope.where(select(Agent), Agent.tenant_id))}
    return page.render(
        "restore_points.html",
        active="runs",
        points=svc.points(session, runs, jobs),
        hosts=hosts,
        agent=agent,
        job=job,
    )


__all__ = ["router"]
