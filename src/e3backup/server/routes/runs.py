"""Runs as users see them: list, detail, events (with meanings) and cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from e3backup.api.common import CommandType, Id, RunStatus
from e3backup.api.recovery import RunEventView
from e3backup.server.db.models import Agent, User
from e3backup.server.deps import CurrentUser, OperatorUser, SessionDep, StateDep, VisibleRun
from e3backup.server.schemas import RunPublic
from e3backup.server.services import audit, history
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
    since: datetime | None = None,
    until: datetime | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[RunPublic]:
    """Runs newest first; ``since``/``until`` bound the creation time (UTC without a zone)."""
    f = _filter(user, tenant_id, job_id, agent_id, status, since, until)
    rows, _ = history.runs_page(session, f, offset, limit)
    return [svc.run_public(r) for r in rows]


def _filter(
    user: User, tenant_id: int | None, job_id: int | None, agent_id: int | None, status: RunStatus | None,
    since: datetime | None, until: datetime | None,
) -> history.RunFilter:
    tenants = [user.tenant_id or 0] if not user.is_admin else ([tenant_id] if tenant_id is not None else None)
    return history.RunFilter(tenants, agent_id, job_id, status.value if status else None, None, since, until)


@router.get("/events/all")
def list_all_events(
    session: SessionDep,
    user: CurrentUser,
    tenant_id: Id | None = None,
    job_id: Id | None = None,
    agent_id: Id | None = None,
    level: Literal["info", "warning", "error"] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, object]]:
    """Events of every run in view (filters as for runs, plus ``level``), newest first."""
    f = _filter(user, tenant_id, job_id, agent_id, None, since, until)
    rows, _ = history.event_rows(session, f, level, offset, limit)
    return [
        {"id": e.id, "run_id": r.id, "tenant_id": r.tenant_id, "job_id": r.job_id, "agent_id": r.agent_id,
         "ts": e.ts.isoformat(), "level": e.level, "code": e.code, "message": e.message}
        for e, r in rows
    ]


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
    audit.record(session, now, "run.cancel", user=user, tenant_id=run.tenant_id, target_type="run",
                 target_id=run.id, details={"job_id": run.job_id, "kind": run.kind})
    session.commit()
    return svc.run_public(run)
