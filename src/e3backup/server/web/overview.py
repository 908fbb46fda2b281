"""The overview page, the tenant switcher, new tenants and the agent enrollment command."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from e3backup.api.common import INT32_MAX
from e3backup.server.db.models import Agent, Job, Run, Tenant
from e3backup.server.deps import SessionDep, StateDep, visible_tenant
from e3backup.server.services import agents as agents_svc
from e3backup.server.services import users as users_svc
from e3backup.server.services.fleet import fleet_health
from e3backup.server.web.auth import safe_next
from e3backup.server.web.deps import TENANT_COOKIE, FormSession, PageDep, PageManager
from e3backup.server.web.views import run_display

router = APIRouter(include_in_schema=False)


def server_url(request: Request) -> str:
    """This server's address as the browser reached it: what an agent on the network uses too."""
    return str(request.base_url).rstrip("/")


def agent_rows(page: PageDep, session: SessionDep, state: StateDep) -> list[dict[str, object]]:
    query = page.scope.where(select(Agent).where(Agent.revoked.is_(False)), Agent.tenant_id)
    agents = list(session.scalars(query.order_by(Agent.hostname, Agent.id)))
    jobs = {agent_id: n for agent_id, n in session.execute(select(Job.agent_id, func.count())
        .where(Job.deleted_at.is_(None))
        .group_by(Job.agent_id))}
    now, offline = state.clock.now(), state.settings.agent_offline_after_seconds
    rows: list[dict[str, object]] = []
    for a in agents:
        disks = (a.disks or {}).get("disks", [])
        rows.append(
            {
                "agent": agents_svc.agent_public(a, now, offline),
                "tenant": page.scope.tenant_name(a.tenant_id),
                "disks": disks,
                "disk_bytes": sum(int(d.get("size_bytes") or 0) for d in disks),
                "jobs": jobs.get(a.id, 0),
            }
        )
    return rows


def enroll_context(page: PageDep, request: Request, token: str | None = None) -> dict[str, Any]:
    return {"server_url": server_url(request), "enroll_token": token, "enroll_tenant": page.scope.tenant}


FLEET_ROWS = 50  # the machines needing attention most; the agents page lists every one


@router.get("/", response_class=HTMLResponse)
def overview(page: PageDep, request: Request, session: SessionDep, state: StateDep) -> HTMLResponse:
    """Fleet health first (what needs attention sorts first), then the latest runs."""
    now = state.clock.now()
    fleet = fleet_health(session, now, state.settings.agent_offline_after_seconds, page.scope.tenant_ids)
    runs = list(session.scalars(page.scope.where(select(Run), Run.tenant_id).order_by(Run.id.desc()).limit(10)))
    names = select(Job.id, Job.name)  # the names only: not every job's settings
    if page.scope.tenant_ids is not None:
        names = names.where(Job.tenant_id.in_(page.scope.tenant_ids))
    jobs = {int(job_id): str(name) for job_id, name in session.execute(names)}
    agents = {a.agent.id: a.agent.hostname for a in fleet.agents}
    return page.render(
        "overview.html",
        active="overview",
        fleet=fleet,
        machines=fleet.agents[:FLEET_ROWS],
        agent_names=agents,
        tenant_names={t.id: t.name for t in page.scope.tenants} if page.scope.all_tenants else {},
        job_count=sum(len(a.jobs) for a in fleet.agents),
        jobs=jobs,
        runs=[(r, run_display(r)) for r in runs],
        **enroll_context(page, request),
    )


@router.post("/tenant")
def switch_tenant(
    user_session: FormSession,
    session: SessionDep,
    tenant_id: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """The admin's tenant switcher: remember the tenant in view (empty: all tenants)."""
    if not user_session.user.is_admin:
        raise HTTPException(status_code=403, detail="only MSP administrators switch tenants")
    response = RedirectResponse(safe_next(next), status_code=303)
    if tenant_id.isdigit() and int(tenant_id) <= INT32_MAX and session.get(Tenant, int(tenant_id)) is not None:
        response.set_cookie(TENANT_COOKIE, tenant_id, httponly=True, samesite="lax", path="/")
    else:
        response.delete_cookie(TENANT_COOKIE, path="/")
    return response


@router.post("/tenants", response_model=None)
def create_tenant(
    page: PageDep,
    user_session: FormSession,
    request: Request,
    session: SessionDep,
    state: StateDep,
    name: Annotated[str, Form()] = "",
) -> Response:
    if not user_session.user.is_admin:
        raise HTTPException(status_code=403, detail="only MSP administrators create tenants")
    name = name.strip()
    error = "" if 0 < len(name) <= 200 else "A name of 1 to 200 characters."
    if not error:
        try:
            tenant = users_svc.create_tenant(session, name, state.clock.now())
            session.commit()
        except IntegrityError:
            session.rollback()
            error = f"A tenant named {name!r} already exists."
    if error:
        return page.render("tenant_new.html", status_code=422, active="overview", error=error, name=name)
    response = RedirectResponse("/agents", status_code=303)
    response.set_cookie(TENANT_COOKIE, str(tenant.id), httponly=True, samesite="lax", path="/")
    return response


@router.get("/tenants/new", response_class=HTMLResponse)
def new_tenant(page: PageDep) -> HTMLResponse:
    if not page.user.is_admin:
        raise HTTPException(status_code=404, detail="not found")
    return page.render("tenant_new.html", active="overview", error="", name="")


@router.post("/enrollment-token", response_class=HTMLResponse)
def enrollment_token(
    page: PageDep,
    _can: PageManager,
    _form: FormSession,
    request: Request,
    session: SessionDep,
    state: StateDep,
) -> HTMLResponse:
    """A new enrollment token for the tenant in view, shown once inside the enroll command."""
    if page.scope.tenant is None:
        raise HTTPException(status_code=409, detail="choose a tenant first (tenant switcher)")
    tenant = visible_tenant(page.scope.tenant.id, session, page.user)
    token = users_svc.rotate_enrollment_token(tenant, state.clock.now())
    session.commit()
    return page.render(
        "agents.html",
        active="agents",
        agents=agent_rows(page, session, state),
        **enroll_context(page, request, token),
    )


__all__ = ["agent_rows", "enroll_context", "router", "server_url"]
