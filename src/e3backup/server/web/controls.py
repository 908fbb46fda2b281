"""The technician's controls in the dashboard: edit, clone (also onto many agents: a template),
enable/disable and delete a job; cancel a run; rename, pause, revoke and delete an agent. Each
goes through the API's handler or the same service, so the rules and the audit log are one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from e3backup.server.deps import SessionDep, StateDep
from e3backup.server.problems import FieldError
from e3backup.server.routes import agents as agents_api
from e3backup.server.routes import jobs as jobs_api
from e3backup.server.routes import runs as runs_api
from e3backup.server.schemas import AgentUpdate, JobClone, JobCreate, JobUpdate
from e3backup.server.services import jobs as jobs_svc
from e3backup.server.web.deps import FormSession, PageAgent, PageDep, PageJob, PageManager, PageOperator, PageRun
from e3backup.server.web.jobs import FormData, _wizard
from e3backup.server.web.wizard import field_errors, form_from_job, presubmit_errors, spec_from_form

router = APIRouter(include_in_schema=False)


@router.get("/jobs/{job_id}/edit", response_class=HTMLResponse)
def edit_job_page(job: PageJob, page: PageDep, _can: PageManager, session: SessionDep) -> HTMLResponse:
    return _wizard(page, session, form_from_job(jobs_svc.spec_of(job)), {}, job=job)


@router.post("/jobs/{job_id}/edit", response_model=None)
def edit_job(
    job: PageJob, page: PageDep, _can: PageManager, _form: FormSession, form: FormData, session: SessionDep,
    state: StateDep,
) -> Response:
    """Saved by the jobs service with the API's rules; secrets left empty are kept."""
    early = presubmit_errors(form, secrets_kept=True)
    try:
        spec = JobCreate.model_validate(spec_from_form(form))
    except ValidationError as e:
        return _wizard(page, session, form, field_errors(e, early), status=422, job=job)
    if early:
        return _wizard(page, session, form, field_errors(None, early), status=422, job=job)
    try:
        jobs_svc.save_job(session, state.box, page.user, spec, state.clock.now(), job=job,
                          served=jobs_svc.GatewayServed.by(state.settings))
        jobs_api.record_job(session, state.clock.now(), page.user, "job.update", job, fields=["form"])
        session.commit()
    except FieldError as e:
        session.rollback()
        return _wizard(page, session, form, field_errors(e), status=422, job=job)
    return RedirectResponse(f"/jobs/{job.id}?notice=saved", status_code=303)


@router.post("/jobs/{job_id}/enabled", response_model=None)
def set_enabled(
    job: PageJob, page: PageDep, _can: PageManager, _form: FormSession, session: SessionDep, state: StateDep,
    enabled: Annotated[str, Form()] = "",
) -> Response:
    jobs_api.update_job(JobUpdate(enabled=enabled == "on"), job, session, state, page.user)
    return RedirectResponse(f"/jobs/{job.id}?notice={'enabled' if job.enabled else 'disabled'}", status_code=303)


@router.post("/jobs/{job_id}/clone", response_model=None)
async def clone_job(
    job: PageJob, page: PageDep, _can: PageManager, _form: FormSession, request: Request, session: SessionDep,
    state: StateDep,
) -> Response:
    """One copy, or with agents picked, one per agent (the job as a template)."""
    raw = await request.form()
    agent_ids = [int(a) for a in raw.getlist("agent_ids") if isinstance(a, str) and a.isdigit() and len(a) < 10]
    try:
        copies = jobs_api.clone_job(JobClone(agent_ids=agent_ids or None), job, session, state, page.user)
    except FieldError as e:
        session.rollback()
        raise HTTPException(status_code=422, detail=e.message) from None
    if len(copies) == 1:
        return RedirectResponse(f"/jobs/{copies[0].id}?notice=cloned", status_code=303)
    return RedirectResponse(f"/jobs?notice=applied-{len(copies)}", status_code=303)


@router.post("/jobs/{job_id}/delete", response_model=None)
def delete_job(
    job: PageJob, page: PageDep, _can: PageManager, _form: FormSession, session: SessionDep, state: StateDep,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    if confirm != job.name:
        return RedirectResponse(f"/jobs/{job.id}?notice=confirm-delete", status_code=303)
    jobs_api.delete_job(job, session, state, page.user)
    return RedirectResponse("/jobs?notice=deleted", status_code=303)


@router.post("/runs/{run_id}/cancel", response_model=None)
def cancel_run(run: PageRun, can: PageOperator, _form: FormSession, session: SessionDep, state: StateDep) -> Response:
    try:
        runs_api.cancel_run(run, session, state, can.user)
    except HTTPException as e:
        if e.status_code != 409:
            raise
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


@router.post("/agents/{agent_id}/update", response_model=None)
def update_agent(
    agent: PageAgent, page: PageDep, _can: PageManager, _form: FormSession, request: Request, session: SessionDep,
    state: StateDep, display_name: Annotated[str | None, Form()] = None, paused: Annotated[str, Form()] = "",
) -> Response:
    """``paused`` is ``on`` or ``off`` (absent: unchanged); an empty name gives the hostname back."""
    body = AgentUpdate(display_name=display_name, paused={"on": True, "off": False}.get(paused))
    agents_api.update_agent(body, agent, request, session, state, page.user)
    return RedirectResponse(f"/agents/{agent.id}", status_code=303)


@router.post("/agents/{agent_id}/revoke", response_model=None)
def revoke_agent(
    agent: PageAgent, page: PageDep, _can: PageManager, _form: FormSession, request: Request, session: SessionDep,
    state: StateDep,
) -> Response:
    agents_api.revoke_agent(agent, request, session, state, page.user)
    return RedirectResponse(f"/agents/{agent.id}", status_code=303)


@router.post("/agents/{agent_id}/delete", response_model=None)
def delete_agent(
    agent: PageAgent, page: PageDep, _can: PageManager, _form: FormSession, request: Request, session: SessionDep,
    state: StateDep, confirm: Annotated[str, Form()] = "",
) -> Response:
    if confirm != agent.hostname:
        return RedirectResponse(f"/agents/{agent.id}?notice=confirm-delete", status_code=303)
    agents_api.delete_agent(agent, request, session, state, page.user)
    return RedirectResponse("/agents", status_code=303)


__all__ = ["router"]
