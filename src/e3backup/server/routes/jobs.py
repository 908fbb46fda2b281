"""Jobs: create, read, update (same rules), delete, run now, and per-job run history."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from e3backup.api.common import Id
from e3backup.server.db.models import Agent, Job, Run, User
from e3backup.server.deps import (
    CurrentUser,
    ManagerUser,
    OperatorUser,
    SessionDep,
    StateDep,
    VisibleJob,
    can_see_tenant,
)
from e3backup.server.errors import FieldError
from e3backup.server.schemas import JobClone, JobCreate, JobPublic, JobUpdate, RunPublic
from e3backup.server.services import audit, controls, quotas
from e3backup.server.services import jobs as svc
from e3backup.server.services import runs as runs_svc

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def record_job(session: Session, now: datetime, user: User, action: str, job: Job, **details: Any) -> None:
    """The audit entry of a change to ``job`` (no destination secrets: only names and ids)."""
    audit.record(
        session, now, action, user=user, tenant_id=job.tenant_id, target_type="job", target_id=job.id,
        details={"name": job.name, "engine": job.engine, **details},
    )


@router.get("")
def list_jobs(
    session: SessionDep, user: CurrentUser, tenant_id: Id | None = None, agent_id: Id | None = None
) -> list[JobPublic]:
    query = select(Job).where(Job.deleted_at.is_(None)).order_by(Job.name, Job.id)
    if not user.is_admin:
        query = query.where(Job.tenant_id == user.tenant_id)
    elif tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    if agent_id is not None:
        query = query.where(Job.agent_id == agent_id)
    return [svc.job_public(j) for j in session.scalars(query)]


@router.post("", status_code=201)
def create_job(body: JobCreate, session: SessionDep, state: StateDep, user: ManagerUser) -> JobPublic:
    job = svc.save_job(session, state.box, user, body, state.clock.now(), served=svc.GatewayServed.by(state.settings))
    record_job(session, state.clock.now(), user, "job.create", job)
    session.commit()
    log.info("job %s (%s) created by user %s", job.id, job.engine, user.id)
    return svc.job_public(job)


@router.get("/{job_id}")
def get_job(job: VisibleJob) -> JobPublic:
    return svc.job_public(job)


@router.patch("/{job_id}")
def update_job(
    body: JobUpdate, job: VisibleJob, session: SessionDep, state: StateDep, user: ManagerUser
) -> JobPublic:
    spec = svc.merged_spec(job, body)
    svc.save_job(session, state.box, user, spec, state.clock.now(), job=job,
                 served=svc.GatewayServed.by(state.settings))
    record_job(session, state.clock.now(), user, "job.update", job,
               fields=sorted(body.model_dump(exclude_unset=True)))
    session.commit()
    log.info("job %s updated by user %s", job.id, user.id)
    return svc.job_public(job)


@router.delete("/{job_id}", status_code=204)
def delete_job(job: VisibleJob, session: SessionDep, state: StateDep, user: ManagerUser) -> None:
    """Delete the job: it stops and disappears, its queued runs are cancelled; its runs, their
    snapshots and the destination stay, so every snapshot can still be restored."""
    session.execute(
        update(Run)
        .where(Run.job_id == job.id, Run.status == "queued")
        .values(status="cancelled", finished_at=state.clock.now())
    )
    record_job(session, state.clock.now(), user, "job.delete", job)
    job.deleted_at = state.clock.now()
    job.enabled = False
    job.next_run_at = None
    session.commit()


@router.post("/{job_id}/run", status_code=201)
def run_now(job: VisibleJob, session: SessionDep, state: StateDep, user: OperatorUser) -> RunPublic:
    """Queue a backup run now (the agent picks it up with its next ``next_run``)."""
    active = session.scalar(
        select(Run.id).where(
            Run.job_id == job.id, Run.kind == "backup", Run.status.in_(("queued", "running"))
        )
    )
    if active is not None:
        raise HTTPException(
            status_code=409, detail=f"job {job.id} already has run {active} queued or running"
        )
    if job.agent_id is None:
        raise HTTPException(status_code=409, detail=f"job {job.id} has no agent")
    agent = session.get(Agent, job.agent_id)
    if agent is not None and agent.paused:
        raise HTTPException(status_code=409, detail=f"agent {agent.name} is paused: no new runs until it is resumed")
    over = quotas.over_quota(session, job)
    if over is not None:
        raise HTTPException(status_code=409, detail=over)
    run = runs_svc.create_run(session, job, state.clock.now(), trigger="manual")
    record_job(session, state.clock.now(), user, "job.run", job, run_id=run.id)
    session.commit()
    return runs_svc.run_public(run)


@router.post("/{job_id}/clone", status_code=201)
def clone_job(
    body: JobClone, job: VisibleJob, session: SessionDep, state: StateDep, user: ManagerUser
) -> list[JobPublic]:
    """A copy of the job, or (``agent_ids``) one per agent: the job as a template for many
    machines, same policy, destination and schedule."""
    now = state.clock.now()
    ids = body.agent_ids or ([job.agent_id] if job.agent_id is not None else [])
    copies = []
    for agent_id in ids:
        agent = session.get(Agent, agent_id)
        if agent is None or not can_see_tenant(user, agent.tenant_id):
            raise FieldError("agent_ids", f"no agent {agent_id}")
        name = body.name or (f"{job.name} (copy)" if body.agent_ids is None else f"{job.name} on {agent.name}")
        copy = controls.clone_job(session, user, job, agent, name[:200], now)
        record_job(session, now, user, "job.clone", copy, source_job_id=job.id)
        copies.append(copy)
    session.commit()
    return [svc.job_public(c) for c in copies]


@router.get("/{job_id}/history")
def job_history(
    job: VisibleJob, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[RunPublic]:
    """The job's runs, newest first (bytes, duration, speed, backup type: the dashboard's charts)."""
    rows = session.scalars(select(Run).where(Run.job_id == job.id).order_by(Run.id.desc()).limit(limit))
    return [runs_svc.run_public(r) for r in rows]
