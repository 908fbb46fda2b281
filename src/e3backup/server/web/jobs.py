"""Jobs: the list, the job wizard (saved by the jobs service: the API's rules), a job's
history charts and its runs, and "Run now"."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import defer, load_only

from e3backup.api.common import Engine, Id, RunKind
from e3backup.events import EventCode
from e3backup.repo.forget import ForgetPolicy
from e3backup.server.db.models import Agent, Job, Run, RunEvent
from e3backup.server.deps import SessionDep, StateDep
from e3backup.server.problems import FieldError
from e3backup.server.routes import jobs as jobs_api
from e3backup.server.scheduler import next_fire
from e3backup.server.schemas import JobCreate
from e3backup.server.services import destinations as destinations_svc
from e3backup.server.services import jobs as jobs_svc
from e3backup.server.services import maintenance as maintenance_svc
from e3backup.server.services import proofs as proofs_svc
from e3backup.server.services.runs import FINAL
from e3backup.server.web import format as fmt
from e3backup.server.web.chart import ChartPoint, line_chart
from e3backup.server.web.deps import FormSession, PageAgent, PageDep, PageJob, PageManager, PageOperator
from e3backup.server.web.views import disk_choices, run_badge, run_display
from e3backup.server.web.wizard import (
    ENGINES,
    SECRET_INPUTS,
    default_form,
    field_errors,
    label,
    presubmit_errors,
    spec_from_form,
)

router = APIRouter(include_in_schema=False)
CHART_RUNS = 60


async def form_data(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


FormData = Annotated[dict[str, str], Depends(form_data)]


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    # the list's columns only: a job's JSON settings and an agent's disk report are most of a row
    listed = load_only(Job.id, Job.tenant_id, Job.agent_id, Job.name, Job.engine, Job.enabled, Job.schedule_cron,
                       Job.schedule_timezone, Job.next_run_at, Job.deleted_at)
    jobs = list(
        session.scalars(
            page.scope.where(select(Job).where(Job.deleted_at.is_(None)), Job.tenant_id)
            .options(listed)
            .order_by(Job.name, Job.id)
        )
    )
    agents = {
        a.id: a
        for a in session.scalars(
            page.scope.where(select(Agent), Agent.tenant_id).options(defer(Agent.disks), defer(Agent.engines))
        )
    }
    # each job's last backup run: one grouped query, not every run of every job
    last_ids = (
        page.scope.where(select(func.max(Run.id)), Run.tenant_id)
        .where(Run.kind == RunKind.BACKUP.value, Run.job_id.is_not(None))
        .group_by(Run.job_id)
    )
    shown = load_only(Run.id, Run.job_id, Run.status, Run.started_at, Run.finished_at)
    last: dict[int, Run] = {
        run.job_id: run
        for run in session.scalars(select(Run).where(Run.id.in_(last_ids)).options(shown))
        if run.job_id is not None
    }
    return page.render(
        "jobs.html",
        active="jobs",
        jobs=jobs,
        agents=agents,
        last={job_id: (r, run_badge(r)) for job_id, r in last.items()},
        proofs=proofs_svc.last_by_job(session, [j.id for j in jobs]),
        has_agents=any(not a.revoked for a in agents.values()),
    )


def _wizard(
    page: PageDep,
    session: SessionDep,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
    job: Job | None = None,
) -> HTMLResponse:
    agents = list(
        session.scalars(
            page.scope.where(select(Agent).where(Agent.revoked.is_(False)), Agent.tenant_id).order_by(Agent.hostname)
        )
    )
    chosen = next((a for a in agents if str(a.id) == form.get("agent_id")), agents[0] if agents else None)
    offered = [value for value, _, _ in ENGINES if chosen is None or jobs_svc.agent_runs(chosen, value)]
    if offered and form.get("engine") not in offered and not errors:
        form = {**form, "engine": offered[0]}  # a fresh form: the first engine the agent runs
    # a secret typed into a form that failed is never sent back to the browser: typed again
    form = {k: v for k, v in form.items() if k not in SECRET_INPUTS}
    return page.render(
        "job_new.html",
        status_code=status,
        active="jobs",
        engines=ENGINES,
        offered=offered,
        agents=agents,
        chosen_agent=chosen,
        volumes=disk_choices(chosen.disks) if chosen else [],
        disks_reported_at=chosen.disks_reported_at if chosen else None,
        hyperv_vms=(chosen.disks or {}).get("hyperv_vms") if chosen else None,
        hyperv_error=(chosen.disks or {}).get("hyperv_error") if chosen else None,
        form=form,
        errors=errors,
        labels={name: label(name) for name in errors},
        destinations=destinations_svc.visible(session, page.user, page.scope.tenant_ids),
        describe_destination=destinations_svc.describe,
        gateway_offered=page.state.settings.gateway_enabled,
        tenant_names={t.id: t.name for t in page.scope.tenants},
        **(
            {"action": f"/jobs/{job.id}/edit", "submit_label": "Save changes", "cancel_href": f"/jobs/{job.id}",
             "editing": job}
            if job is not None
            else {}
        ),
    )


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job(page: PageDep, _can: PageManager, session: SessionDep, agent_id: Id | None = None,
            engine: Engine | None = None) -> HTMLResponse:
    form = default_form()
    if agent_id is not None:
        form["agent_id"] = str(agent_id)
    if engine is not None:
        form["engine"] = engine.value
    return _wizard(page, session, form, {})


@router.post("/jobs/new", response_model=None)
def create_job(
    page: PageDep, _can: PageManager, _form: FormSession, form: FormData, session: SessionDep, state: StateDep
) -> Response:
    early = presubmit_errors(form)
    try:
        spec = JobCreate.model_validate(spec_from_form(form))
    except ValidationError as e:
        return _wizard(page, session, form, field_errors(e, early), status=422)
    if early:
        return _wizard(page, session, form, field_errors(None, early), status=422)
    try:
        job = jobs_svc.save_job(session, state.box, page.user, spec, state.clock.now(),
                                served=jobs_svc.GatewayServed.by(state.settings))
        jobs_api.record_job(session, state.clock.now(), page.user, "job.create", job)
        session.commit()
    except FieldError as e:
        session.rollback()
        return _wizard(page, session, form, field_errors(e), status=422)
    return RedirectResponse(f"/jobs/{job.id}?notice=created", status_code=303)


@router.get("/agents/{agent_id}/disk-choices")
def agent_disk_choices(agent: PageAgent) -> JSONResponse:
    """The wizard's volume choices for an agent (after switching agent or refreshing disks)."""
    return JSONResponse(
        {
            "agent_id": agent.id,
            "reported_at": fmt.when(agent.disks_reported_at) if agent.disks_reported_at else None,
            "choices": disk_choices(agent.disks),
        }
    )


def _charts(runs: list[Run]) -> dict[str, Any]:
    finished = [
        r for r in runs if r.kind == RunKind.BACKUP.value and r.status in FINAL and r.started_at and r.finished_at
    ]
    finished = finished[-CHART_RUNS:]
    size_points = [
        ChartPoint(r.id, r.finished_at, float(r.bytes_total or r.bytes_processed or 0), r.status)  # type: ignore[arg-type]
        for r in finished
    ]
    duration_points = [
        ChartPoint(r.id, r.finished_at, (r.finished_at - r.started_at).total_seconds(), r.status)  # type: ignore[arg-type,operator]
        for r in finished
    ]
    return {
        "count": len(finished),
        "size": line_chart(size_points, "Backup size per run", fmt.size, "chart-size"),
        "duration": line_chart(duration_points, "Backup duration per run", fmt.duration, "chart-duration"),
    }


def _retention(session: SessionDep, job: Job, runs: list[Run]) -> dict[str, Any]:
    """The job's policy in words, when it was last applied (its ``RETENTION_APPLIED`` event)
    and how many of its snapshots it forgot."""
    policy = ForgetPolicy(**job.retention).describe() if job.retention else ""
    event = session.scalar(
        select(RunEvent)
        .join(Run, Run.id == RunEvent.run_id)
        .where(Run.job_id == job.id, RunEvent.code == EventCode.RETENTION_APPLIED.value)
        .order_by(RunEvent.id.desc())
        .limit(1)
    )
    last = None
    if event is not None:
        last = {
            "run_id": event.run_id,
            "ts": event.ts,
            "removed": len(event.details.get("removed", [])),
            "kept": event.details.get("kept", 0),
        }
    return {"policy": policy, "last": last, "forgotten": sum(1 for r in runs if r.snapshot_removed_at is not None)}


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job: PageJob, page: PageDep, session: SessionDep, notice: str = "") -> HTMLResponse:
    runs = list(session.scalars(select(Run).where(Run.job_id == job.id).order_by(Run.id)))
    agent = session.get(Agent, job.agent_id) if job.agent_id is not None else None
    return page.render(
        "job.html",
        retention=_retention(session, job, runs),
        maintenance=maintenance_svc.for_job(session, job),
        active="jobs",
        job=jobs_svc.job_public(job),
        agent=agent,
        tenant=page.scope.tenant_name(job.tenant_id),
        charts=_charts(runs),
        runs=[(r, run_display(r)) for r in reversed(runs[-50:])],
        notice=notice,
        next_runs=_next_runs(job),
        proof=proofs_svc.last_by_job(session, [job.id]).get(job.id),
        verify_boot=(job.policy or {}).get("verify_boot", "off"),
        other_agents=list(
            session.scalars(
                select(Agent)
                .where(Agent.tenant_id == job.tenant_id, Agent.revoked.is_(False), Agent.id != job.agent_id)
                .order_by(Agent.hostname)
            )
        ),
    )


def _next_runs(job: Job, count: int = 3) -> list[datetime]:
    """The schedule's next fire times (after the stored next run), for the job page."""
    if not job.schedule_cron or not job.enabled or job.next_run_at is None:
        return []
    times = [job.next_run_at]
    while len(times) < count:
        times.append(next_fire(job.schedule_cron, job.schedule_timezone, times[-1]))
    return times


@router.post("/jobs/{job_id}/run", response_model=None)
def run_job_now(
    job: PageJob, can: PageOperator, _form: FormSession, session: SessionDep, state: StateDep
) -> Response:
    """Queue a run now through the jobs API's own handler (same checks: one active run, an agent)."""
    try:
        run = jobs_api.run_now(job, session, state, can.user)
    except HTTPException as e:
        if e.status_code != 409:
            raise
        return RedirectResponse(f"/jobs/{job.id}?notice=busy", status_code=303)
    return RedirectResponse(f"/runs/{run.id}", status_code=303)


__all__ = ["router"]
