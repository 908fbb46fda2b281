"""Agents: the list (online/offline, last seen, OS, disks) and one agent's disks, jobs and runs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from e3backup.server.db.models import Job, Run
from e3backup.server.deps import SessionDep, StateDep
from e3backup.server.services import agents as agents_svc
from e3backup.server.web.deps import PageAgent, PageDep
from e3backup.server.web.overview import agent_rows, enroll_context
from e3backup.server.web.views import run_display

router = APIRouter(include_in_schema=False)


@router.get("/agents", response_class=HTMLResponse)
def agents_page(page: PageDep, request: Request, session: SessionDep, state: StateDep) -> HTMLResponse:
    return page.render(
        "agents.html", active="agents", agents=agent_rows(page, session, state), **enroll_context(page, request)
    )


@router.get("/agents/{agent_id}", response_class=HTMLResponse)
def agent_page(agent: PageAgent, page: PageDep, session: SessionDep, state: StateDep) -> HTMLResponse:
    jobs = list(session.scalars(select(Job).where(Job.agent_id == agent.id).order_by(Job.name)))
    runs = list(session.scalars(select(Run).where(Run.agent_id == agent.id).order_by(Run.id.desc()).limit(20)))
    return page.render(
        "agent.html",
        active="agents",
        agent=agents_svc.agent_public(agent, state.clock.now(), state.settings.agent_offline_after_seconds),
        disks=agents_svc.agent_disks(agent),
        tenant=page.scope.tenant_name(agent.tenant_id),
        jobs=jobs,
        job_names={j.id: j.name for j in jobs},
        runs=[(r, run_display(r)) for r in runs],
    )


__all__ = ["router"]
