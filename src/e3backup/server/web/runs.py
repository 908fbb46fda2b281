"""Runs: the list, the run page with live progress and events, and the restore button.

Live progress is a Server-Sent Events stream (``/runs/{id}/events/stream``): the server re-reads
the run and its new events when a commit changed the run (woken through ``cluster.bus``, from any
replica) and at least every second (SQLite) or every few seconds (PostgreSQL, where a missed
notification is the only reason to re-read), and sends one ``update`` when something changed; the
stream ends (``end``) once the run has finished and every event was sent, when the user's session
ends, or after a few minutes (the browser then reconnects, resuming from ``Last-Event-ID``).
Browsers without EventSource, or whose stream fails, poll ``/runs/{id}/live`` with the same
payload. Both check the session and the run's tenant like every page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from e3backup.api.common import INT32_MAX, CommandType, Id, RunStatus
from e3backup.server import deps as api_deps
from e3backup.server.cluster.bus import run_key
from e3backup.server.db.models import Agent, Job, RecoverySession, Run
from e3backup.server.deps import SessionDep, StateDep
from e3backup.server.problems import FieldError
from e3backup.server.routes import commands as commands_api
from e3backup.server.routes import recovery as recovery_api
from e3backup.server.routes import runs as runs_api
from e3backup.server.schemas import CommandCreate
from e3backup.server.services import events as events_svc
from e3backup.server.services import history
from e3backup.server.services import runs as runs_svc
from e3backup.server.services import users as users_svc
from e3backup.server.services.history import RunFilter
from e3backup.server.services.restore_targets import AgentTargets, restore_target
from e3backup.server.state import ServerState
from e3backup.server.web.deps import (
    FormSession,
    LoginRequired,
    PageDep,
    PageManager,
    PageOperator,
    PageRun,
    page_session,
)
from e3backup.server.web.views import event_display, run_display

router = APIRouter(include_in_schema=False)

STREAM_COALESCE_SECONDS = 0.2  # wake-ups closer than this share one read
STREAM_MAX_SECONDS = 300.0
KEEPALIVE_SECONDS = 15.0
EVENT_BATCH = 200


PAGE_SIZE = 50


def _run_filter(page: PageDep, status: str, agent_id: str, job_id: str, since: str, until: str) -> RunFilter:
    """The page's filters; values that do not parse are ignored (the form shows them unset)."""
    def number(text: str) -> int | None:
        return int(text) if text.isdigit() and int(text) <= INT32_MAX else None

    def day(text: str) -> datetime | None:
        try:
            return datetime.fromisoformat(text) if text else None
        except ValueError:
            return None

    until_at = day(until)
    if until_at is not None and len(until) <= 10:
        until_at += timedelta(days=1)  # a date: through the end of that day
    return RunFilter(
        tenant_ids=page.scope.tenant_ids, agent_id=number(agent_id), job_id=number(job_id),
        status=status if status in {s.value for s in RunStatus} else None, since=day(since), until=until_at,
    )


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    page: PageDep, session: SessionDep, status: str = "", agent_id: str = "", job_id: str = "", since: str = "",
    until: str = "", offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """Every run in view, 50 a page, newest first, with filters and the CSV of the same."""
    f = _run_filter(page, status, agent_id, job_id, since, until)
    runs, total = history.runs_page(session, f, offset, PAGE_SIZE)
    labels = history.names(session, page.scope.tenant_ids)
    params = {k: v for k, v in {"status": status, "agent_id": agent_id, "job_id": job_id, "since": since,
                                 "until": until}.items() if v}
    return page.render(
        "runs.html",
        active="runs",
        runs=[(r, run_display(r)) for r in runs],
        jobs=labels["jobs"],
        agents=labels["agents"],
        tenant_names=labels["tenants"] if page.scope.all_tenants else {},
        status=status,
        statuses=[s.value for s in RunStatus],
        filters={"agent_id": agent_id, "job_id": job_id, "since": since, "until": until},
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        query=urlencode(params),
    )


@router.get("/runs.csv")
def runs_csv(
    page: PageDep, session: SessionDep, status: str = "", agent_id: str = "", job_id: str = "", since: str = "",
    until: str = "",
) -> StreamingResponse:
    f = _run_filter(page, status, agent_id, job_id, since, until)
    return StreamingResponse(
        history.runs_csv(session, f), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="e3backup-runs.csv"'},
    )


LEVELS = ("info", "warning", "error")


@router.get("/events", response_class=HTMLResponse)
def events_page(
    page: PageDep, session: SessionDep, level: str = "", agent_id: str = "", job_id: str = "", since: str = "",
    until: str = "", offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """Every event of the runs in view, 50 a page, newest first, filtered like the runs (plus the
    level), with the CSV of the same."""
    f = _run_filter(page, "", agent_id, job_id, since, until)
    chosen = level if level in LEVELS else None
    rows, total = history.event_rows(session, f, chosen, offset, PAGE_SIZE)
    labels = history.names(session, page.scope.tenant_ids)
    params = {k: v for k, v in {"level": chosen or "", "agent_id": agent_id, "job_id": job_id, "since": since,
                                 "until": until}.items() if v}
    return page.render(
        "events.html", active="events", rows=rows, jobs=labels["jobs"], agents=labels["agents"],
        tenant_names=labels["tenants"] if page.scope.all_tenants else {}, level=chosen or "", levels=LEVELS,
        filters={"agent_id": agent_id, "job_id": job_id, "since": since, "until": until}, total=total,
        offset=offset, page_size=PAGE_SIZE, query=urlencode(params),
    )


@router.get("/events.csv")
def events_csv(
    page: PageDep, session: SessionDep, level: str = "", agent_id: str = "", job_id: str = "", since: str = "",
    until: str = "",
) -> StreamingResponse:
    f = _run_filter(page, "", agent_id, job_id, since, until)
    return StreamingResponse(
        history.events_csv(session, f, level if level in LEVELS else None), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="e3backup-events.csv"'},
    )


RESTORABLE = {RunStatus.SUCCESS.value, RunStatus.WARNING.value}


def restorable(run: Run) -> bool:
    """A snapshot that still exists (retention did not forget it), of a job whose row is kept
    (deleted jobs keep theirs), on an agent."""
    return runs_svc.restorable(run) and run.job_id is not None and run.agent_id is not None


def _run_page(
    page: PageDep,
    run: Run,
    session: SessionDep,
    notice: str = "",
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    events = [event_display(e) for e in events_svc.list_events(session, run.id, 0, 1000)]
    job = session.get(Job, run.job_id) if run.job_id is not None else None
    agent = session.get(Agent, run.agent_id) if run.agent_id is not None else None
    can_restore = restorable(run) and job is not None and agent is not None and not agent.revoked
    return page.render(
        "run.html",
        status_code=status_code,
        active="runs",
        run=run,
        view=run_display(run),
        events=events,
        last_event_id=events[-1]["id"] if events else 0,
        job=job,
        agent=agent,
        restore=run.restore or {},
        restorable=can_restore,
        targets=AgentTargets.of(agent) if can_restore and agent is not None else None,
        recovery_open=run.trigger == "recovery"
        and session.scalar(select(RecoverySession.id).where(RecoverySession.run_id == run.id)) is not None,
        notice=notice,
        errors=errors or {},
        form=form or {},
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run: PageRun, page: PageDep, session: SessionDep, notice: str = "") -> HTMLResponse:
    return _run_page(page, run, session, notice)


@router.post("/runs/{run_id}/restore", response_model=None)
def restore_run(
    run: PageRun,
    page: PageDep,
    _can: PageOperator,
    _form: FormSession,
    session: SessionDep,
    state: StateDep,
    target_kind: Annotated[str, Form()] = "folder",
    target_root: Annotated[str, Form()] = "",
    target_sub: Annotated[str, Form()] = "",
    target_disk: Annotated[str, Form()] = "",
    image_format: Annotated[str, Form()] = "raw",
    register_vm: Annotated[str, Form()] = "none",
    vm: Annotated[str, Form()] = "",
    confirm_vm: Annotated[str, Form()] = "",
) -> Response:
    """Queue a ``restore`` command for the run's snapshot through the commands API's handler.

    The target is one of the agent's reported restore folders (plus a sub-folder, or for an
    image a file name) or one of its allowed devices: a device goes as ``target_disk``, which
    is what the agent checks against ``allowed_devices``."""
    form = {"target_kind": target_kind, "target_root": target_root, "target_sub": target_sub,
            "target_disk": target_disk, "image_format": image_format, "register_vm": register_vm, "vm": vm,
            "confirm_vm": confirm_vm}
    agent = session.get(Agent, run.agent_id) if run.agent_id is not None else None
    job = session.get(Job, run.job_id) if run.job_id is not None else None
    if not restorable(run) or agent is None or job is None:
        raise HTTPException(status_code=409, detail=f"run {run.id} has no snapshot to restore")
    try:
        target = restore_target(AgentTargets.of(agent), job.engine, target_kind, target_root, target_sub,
                                target_disk, image_format)
        hyperv = job.engine == "hyperv"
        backed_up = {r.get("vm_name"): r.get("checkpoint_id") for r in run.hyperv_results or [] if not r.get("error")}
        if hyperv and vm not in backed_up:
            raise FieldError("vm", f"choose one of the VMs this run backed up: {', '.join(map(str, backed_up))}")
        if hyperv and (image_format not in ("vhdx", "raw") or register_vm not in ("none", "new", "replace")):
            raise FieldError("image_format" if image_format not in ("vhdx", "raw") else "register_vm",
                             "choose VHDX or raw disks, and whether to register the VM (new or in place)")
        if hyperv and register_vm == "replace" and confirm_vm != vm:
            # the original VM is removed first: the user types its name, as for a disk
            raise FieldError("confirm_vm", f"type the VM's name ({vm}) to replace the original VM")
    except FieldError as e:
        return _run_page(page, run, session, errors={e.field: e.message}, form=form, status_code=422)
    payload = {"snapshot_id": run.snapshot_id, **target, "source_run_id": run.id}
    if hyperv:  # one VM of this run (its checkpoint): disks as VHDX/raw plus its configuration
        payload |= {"snapshot_id": "latest", "vm": vm, "checkpoint_id": backed_up[vm], "format": image_format,
                    "register_vm": register_vm, "confirm_replace": register_vm == "replace"}
    body = CommandCreate(
        type=CommandType.HYPERV_RESTORE if hyperv else CommandType.RESTORE,
        job_id=job.id,
        payload=payload,
    )
    try:
        cmd = commands_api.create_command(body, agent, session, state, page.user)
    except FieldError as e:
        session.rollback()
        return _run_page(page, run, session, errors={"target_root": e.message}, form=form, status_code=422)
    except HTTPException as e:
        if e.status_code != 409:
            raise
        return _run_page(page, run, session, errors={"target_root": str(e.detail)}, form=form, status_code=409)
    return RedirectResponse(f"/runs/{cmd.run_id}?notice=restore-queued", status_code=303)


@router.post("/runs/{run_id}/recovery/cancel", response_model=None)
def cancel_recovery(
    run: PageRun, can: PageOperator, _form: FormSession, session: SessionDep, state: StateDep
) -> Response:
    """Ask the recovery console to stop (it polls for cancel and reports the run cancelled)."""
    if run.trigger != "recovery":
        raise HTTPException(status_code=409, detail=f"run {run.id} is not a recovery run")
    runs_api.cancel_run(run, session, state, can.user)
    return RedirectResponse(f"/runs/{run.id}?notice=recovery-cancelling", status_code=303)


@router.post("/runs/{run_id}/recovery/revoke", response_model=None)
def revoke_recovery(
    run: PageRun, can: PageManager, _form: FormSession, session: SessionDep, state: StateDep
) -> Response:
    """End the recovery console's session through the API's handler (the run is cancelled)."""
    recovery_api.revoke_session(run, session, state, can.user)
    return RedirectResponse(f"/runs/{run.id}?notice=recovery-revoked", status_code=303)


# --- live progress ---------------------------------------------------------------------------


def live_payload(session: Any, run: Run, after_id: int) -> dict[str, Any]:
    events = [event_display(e) for e in events_svc.list_events(session, run.id, after_id, EVENT_BATCH)]
    return {"run": run_display(run), "events": events}


@router.get("/runs/{run_id}/live")
def run_live(run: PageRun, session: SessionDep, after_id: Id = 0) -> JSONResponse:
    """The polling fallback: the run and its events after ``after_id``."""
    return JSONResponse(live_payload(session, run, after_id))


def _stream_auth(request: Request, state: ServerState, run_id: int) -> str:
    """The session's token hash, if its user may see the run (else 401/404, like the API)."""
    with state.sessions() as session:
        try:
            row = page_session(request, session, state)
        except LoginRequired as e:
            raise HTTPException(status_code=401, detail="not signed in") from e
        api_deps.visible_run(run_id, session, row.user)
        return row.token_hash


def _stream_read(state: ServerState, token_hash: str, run_id: int, after_id: int) -> dict[str, Any] | None:
    """The next payload, or None when the session ended or the run is gone."""
    with state.sessions() as session:
        row = users_svc.live_session_by_hash(session, token_hash, state.clock.now())
        if row is None:
            return None
        run = session.get(Run, run_id)
        if run is None or not api_deps.can_see_tenant(row.user, run.tenant_id):
            return None
        return live_payload(session, run, after_id)


def _sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/runs/{run_id}/events/stream")
async def run_stream(run_id: Id, request: Request, state: StateDep, after_id: Id = 0) -> StreamingResponse:
    token_hash = await run_in_threadpool(_stream_auth, request, state, run_id)
    last_id = request.headers.get("last-event-id", "")
    start = int(last_id) if last_id.isdigit() and int(last_id) <= INT32_MAX else after_id
    interval = getattr(request.app.state, "web_stream_interval", None) or state.bus.poll_fallback_seconds

    async def updates() -> AsyncIterator[str]:
        wake = state.waiters.register(run_key(run_id))
        try:
            async for chunk in _updates(wake):
                yield chunk
        finally:
            state.waiters.unregister(run_key(run_id), wake)

    async def _updates(wake: asyncio.Event) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deadline, quiet_since = loop.time() + STREAM_MAX_SECONDS, loop.time()
        after, sent_run = start, None
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            wake.clear()
            payload = await run_in_threadpool(_stream_read, state, token_hash, run_id, after)
            if payload is None:
                yield _sse("end", {"reason": "signed out or run gone"})
                return
            if payload["events"]:
                after = payload["events"][-1]["id"]
            if payload["events"] or payload["run"] != sent_run:
                sent_run = payload["run"]
                quiet_since = loop.time()
                yield _sse("update", payload, after)
            elif loop.time() - quiet_since > KEEPALIVE_SECONDS:
                quiet_since = loop.time()
                yield ": keep-alive\n\n"
            if payload["run"]["final"] and not payload["events"]:
                yield _sse("end", {"reason": "finished", "status": payload["run"]["status"]})
                return
            if loop.time() > deadline:
                return  # the browser reconnects with Last-Event-ID
            await asyncio.sleep(min(interval, STREAM_COALESCE_SECONDS))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=max(interval - STREAM_COALESCE_SECONDS, 0))

    return StreamingResponse(
        updates(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = ["router"]
