"""Runs as users see them: list, detail, events (with meanings) and cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import select

from e3backup.api.common import CommandType, Id, RunStatus
from e3backup.api.recovery import RunEventView
from e3backup.server.db.models import Agent, Run
from e3backup.server.deps import CurrentUser, OperatorUser, SessionDep, StateDep, VisibleRun
from e3backup.server.schemas import RunPublic
from e3backup.server.services import commands as commands_svc
from e3backup.server.services import events as events_svc
from e3backup.server.services import runs as svc

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.get("")
def list_runs(
    session: SessionDep,
    user: CurrentUser,
    tenant_id: Id | None = None,
    job_id: Id | None = None,
    agent_id: Id | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RunPublic]:
    query = select(Run).order_by(Run.id.desc()).limit(limit)
    if not user.is_admin:
        query = query.where(Run.tenant_id == user.tenant_id)
    elif tenant_id is not None:
        query = query.where(Run.tenant_id == tenant_id)
    if job_id is not None:
        query = query.where(Run.job_id == job_id)
    if agent_id is not None:
        query = query.where(Run.agent_id == agent_id)
    if status is not None:
        query = query.where(Run.status == status.value)
    return [svc.run_public(r) for r in session.scalars(query)]


@router.get("/{run_id}")
def get_run(run: VisibleRun) -> RunPublic:
    return svc.run_public(run)


@router.get("/{run_id}/events")
def get_events(
    run: VisibleRun,
    session: SessionDep,
    after_id: Id = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[RunEventView]:
    """Events after ``after_id`` (poll with the last id seen), with each code's meaning."""
    return events_svc.list_events(session, run.id, after_id, limit)


@router.post("/{run_id}/cancel")
def cancel_run(run: VisibleRun, session: SessionDep, state: StateDep, user: OperatorUser) -> RunPublic:
    """A queued run is cancelled at once; a running one gets a ``cancel`` command for its agent."""
    now = state.clock.now()
    if run.status in svc.FINAL:
        raise HTTPException(status_code=409, detail=f"run {run.id} already finished as {run.status}")
    if run.status == RunStatus.QUEUED.value:
        run.status = RunStatus.CANCELLED.value
        run.finished_at = now
    elif not run.cancel_requested:
        run.cancel_requested = True
        agent = session.get(Agent, run.agent_id) if run.agent_id is not None else None
        if agent is not None:
            commands_svc.queue(session, agent, CommandType.CANCEL, now, run_id=run.id, user_id=user.id)
    session.commit()
    return svc.run_public(run)
