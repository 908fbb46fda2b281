"""Agents: the list (online/offline, last seen, OS, disks) and one agent's disks, jobs and runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from e3backup.server.db.models import Agent, Job, Run, Tenant
from e3backup.server.deps import SessionDep, StateDep, client_ip
from e3backup.server.errors import FieldError
from e3backup.server.services import agent_releases, audit, recovery_codes
from e3backup.server.services import agents as agents_svc
from e3backup.server.web.deps import FormSession, PageAgent, PageDep, PageManager
from e3backup.server.web.overview import agent_rows, enroll_context
from e3backup.server.web.views import run_display

router = APIRouter(include_in_schema=False)


def _version_context(page: PageDep, session: SessionDep) -> dict[str, Any]:
    """MSP admins choose the agent version each tenant in view is offered (self-update)."""
    if not page.user.is_admin:
        return {"version_tenants": []}
    tenants = page.scope.tenants if page.scope.all_tenants else [t for t in [page.scope.tenant] if t]
    return {"version_tenants": tenants, "releases": sorted({r.version for r in agent_releases.releases(session)}),
            "version_error": ""}


@router.get("/agents", response_class=HTMLResponse)
def agents_page(
    page: PageDep, request: Request, session: SessionDep, state: StateDep, notice: str = ""
) -> HTMLResponse:
    return page.render(
        "agents.html", active="agents", agents=agent_rows(page, session, state), notice=notice[:80],
        **_version_context(page, session), **enroll_context(page, request),
    )


@router.post("/agents/agent-version")
def set_agent_version(
    page: PageDep,
    _form: FormSession,
    request: Request,
    session: SessionDep,
    state: StateDep,
    tenant_id: Annotated[int, Form(ge=1)],
    version: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """The agents page's version control (the API's ``PUT /api/tenants/{id}/agent-version``)."""
    if not page.user.is_admin:
        raise HTTPException(status_code=403, detail="only MSP administrators may do this")
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise HTTPException(status_code=404, detail="no such tenant")
    before = tenant.agent_version_wanted
    try:
        agent_releases.choose_version(session, tenant, version)
    except FieldError as e:
        session.rollback()
        context = {**_version_context(page, session), "version_error": e.message, "notice": "",
                   **enroll_context(page, request)}
        return page.render("agents.html", status_code=422, active="agents", agents=agent_rows(page, session, state),
                           **context)
    audit.record(session, state.clock.now(), "tenant.agent_version", user=page.user, tenant_id=tenant.id,
                 target_type="tenant", target_id=tenant.id, ip=client_ip(request),
                 details={"from": before, "to": tenant.agent_version_wanted})
    session.commit()
    return RedirectResponse("/agents?notice=version-saved", status_code=303)


def _agent_page(
    agent: Agent,
    page: PageDep,
    session: SessionDep,
    state: StateDep,
    recover_error: str = "",
    status_code: int = 200,
    notice: str = "",
) -> HTMLResponse:
    jobs = list(
        session.scalars(select(Job).where(Job.agent_id == agent.id, Job.deleted_at.is_(None)).order_by(Job.name))
    )
    runs = list(session.scalars(select(Run).where(Run.agent_id == agent.id).order_by(Run.id.desc()).limit(20)))
    recoveries = recovery_codes.recovery_runs(session, agent)
    return page.render(
        "agent.html",
        status_code=status_code,
        active="agents",
        restore_points=recovery_codes.restore_points(session, agent),
        recoveries=[(r, run_display(r)) for r in recoveries],
        recover_error=recover_error,
        agent=agents_svc.agent_public(agent, state.clock.now(), state.settings.agent_offline_after_seconds),
        disks=agents_svc.agent_disks(agent),
        tenant=page.scope.tenant_name(agent.tenant_id),
        jobs=jobs,
        job_names={j.id: j.name for j in jobs},
        runs=[(r, run_display(r)) for r in runs],
        notice=notice,
    )


@router.get("/agents/{agent_id}", response_class=HTMLResponse)
def agent_page(agent: PageAgent, page: PageDep, session: SessionDep, state: StateDep, notice: str = "") -> HTMLResponse:
    return _agent_page(agent, page, session, state, notice=notice[:40])


@router.post("/agents/{agent_id}/recovery", response_class=HTMLResponse)
def recovery_code(
    agent: PageAgent,
    page: PageDep,
    _can: PageManager,
    _form: FormSession,
    request: Request,
    session: SessionDep,
    state: StateDep,
    snapshot_id: Annotated[str, Form(max_length=128)] = "",
) -> HTMLResponse:
    """"Recover this machine": a one-time code for the chosen restore point, shown once."""
    try:
        row, code = recovery_codes.issue(
            session, agent, snapshot_id, page.user, state.clock.now(), state.settings.recovery_code_minutes,
            client_ip(request),
        )
    except FieldError as e:
        session.rollback()
        return _agent_page(agent, page, session, state, recover_error=e.message, status_code=422)
    session.commit()
    source = session.get(Run, row.source_run_id) if row.source_run_id is not None else None
    return page.render(
        "recovery_code.html",
        active="agents",
        agent=agent,
        code=code,
        expires_at=row.expires_at,
        snapshot_id=row.snapshot_id,
        source=source,
        server_url=str(request.base_url).rstrip("/"),
    )


__all__ = ["router"]
