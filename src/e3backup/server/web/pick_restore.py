"""Restore files and folders picked in the snapshot browser: to their original place, or into a
restore folder of this machine or of another agent of the same tenant, with what happens to
files already there (overwrite, keep both, skip) and a preview of where each one lands. From a
disk image snapshot, the picked files of its partitions go into a restore folder; the agent
reads them through the partition's ext4 or NTFS file system (``restore.image_files``).

The form is a GET that re-renders the preview (no script needed); the POST queues the
``restore`` command on the chosen agent through the commands API's handler and is recorded in
the audit log as ``snapshot.restore``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from e3backup.api.common import CommandType, Id
from e3backup.server.db.models import Agent, Run
from e3backup.server.deps import SessionDep, StateDep, client_ip
from e3backup.server.errors import FieldError
from e3backup.server.routes import commands as commands_api
from e3backup.server.schemas import CommandCreate
from e3backup.server.services import audit
from e3backup.server.services.pick_restore import CONFLICTS, PickChoice, restore_request
from e3backup.server.services.restore_targets import AgentTargets
from e3backup.server.web.browse import browsable
from e3backup.server.web.deps import FormSession, PageDep, PageOperator, PageRun

router = APIRouter(include_in_schema=False)
CONFLICT_LABELS = {
    "keep_both": "Keep both: the restored file gets a new name (“name (restored).ext”)",
    "overwrite": "Overwrite the existing file",
    "skip": "Skip: leave the existing file as it is",
}


def _agents(session: SessionDep, run: Run) -> list[Agent]:
    query = select(Agent).where(Agent.tenant_id == run.tenant_id, Agent.revoked.is_(False))
    return list(session.scalars(query.order_by(Agent.hostname, Agent.id)))


def _windows(agent: Agent) -> bool:
    return agent.os.lower().startswith("win") or agent.platform == "win32"


def _render(page: PageDep, session: SessionDep, run: Run, agent: Agent | None, choice: PickChoice,
            errors: dict[str, str], status_code: int = 200) -> HTMLResponse:
    job, _ = browsable(run, session)
    image = job.engine == "disk_image"
    agents = _agents(session, run)
    preview: list[tuple[str, str]] = []
    if agent is not None and not errors:
        try:
            _, preview = restore_request(run.snapshot_id or "", choice, AgentTargets.of(agent), _windows(agent), image)
        except FieldError as e:
            errors = {e.field: e.message}
    return page.render(
        "pick_restore.html", status_code=status_code, active="runs", run=run, job=job, agents=agents, image=image,
        agent=agent, targets=AgentTargets.of(agent) if agent is not None else None, choice=choice, errors=errors,
        preview=preview, conflicts=[(c, CONFLICT_LABELS[c]) for c in CONFLICTS],
    )


def _target_agent(session: SessionDep, run: Run, agent_id: int | None) -> Agent | None:
    agent = session.get(Agent, agent_id if agent_id is not None else run.agent_id)
    if agent is None or agent.tenant_id != run.tenant_id or agent.revoked:
        return None
    return agent


@router.get("/runs/{run_id}/browse/restore", response_class=HTMLResponse)
def pick_restore_form(
    run: PageRun, page: PageDep, _can: PageOperator, session: SessionDep,
    base: str = "", paths: Annotated[list[str] | None, Query()] = None, agent_id: Id | None = None,
    where: str = "folder", target_root: str = "", target_sub: str = "", keep_parents: str = "",
    conflict: str = "keep_both",
) -> HTMLResponse:
    agent = _target_agent(session, run, agent_id)
    choice = PickChoice(base, list(paths or []), where, target_root, target_sub, bool(keep_parents), conflict)
    if agent is not None and not target_root:
        roots = AgentTargets.of(agent).restore_roots
        choice = PickChoice(base, choice.paths, where, roots[0] if roots else "", target_sub, choice.keep_parents,
                            conflict)
    errors = {} if agent is not None else {"agent_id": "choose an agent of this tenant"}
    return _render(page, session, run, agent, choice, errors)


@router.post("/runs/{run_id}/browse/restore", response_model=None)
def pick_restore(
    run: PageRun, page: PageDep, _can: PageOperator, _form: FormSession, session: SessionDep, state: StateDep,
    request: Request,
    agent_id: Annotated[int, Form()],
    base: Annotated[str, Form()] = "",
    paths: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI reads the default, never mutates it
    where: Annotated[str, Form()] = "folder",
    target_root: Annotated[str, Form()] = "",
    target_sub: Annotated[str, Form()] = "",
    keep_parents: Annotated[str, Form()] = "",
    conflict: Annotated[str, Form()] = "keep_both",
) -> Response:
    job, _ = browsable(run, session)
    agent = _target_agent(session, run, agent_id)
    choice = PickChoice(base, paths, where, target_root, target_sub, bool(keep_parents), conflict)
    if agent is None:
        return _render(page, session, run, None, choice, {"agent_id": "choose an agent of this tenant"}, 422)
    try:
        payload, _ = restore_request(run.snapshot_id or "", choice, AgentTargets.of(agent), _windows(agent),
                                     job.engine == "disk_image")
    except FieldError as e:
        return _render(page, session, run, agent, choice, {e.field: e.message}, 422)
    body = CommandCreate(type=CommandType.RESTORE, job_id=job.id, payload={**payload, "source_run_id": run.id})
    try:
        cmd = commands_api.create_command(body, agent, session, state, page.user)
    except FieldError as e:
        session.rollback()
        return _render(page, session, run, agent, choice, {"target_root": e.message}, 422)
    except HTTPException as e:
        if e.status_code != 409:
            raise
        return _render(page, session, run, agent, choice, {"agent_id": str(e.detail)}, 409)
    audit.record(session, state.clock.now(), "snapshot.restore", user=page.user, tenant_id=run.tenant_id,
                 target_type="run", target_id=run.id, ip=client_ip(request),
                 details={"paths": ["/" + p.strip("/") for p in paths], "agent_id": agent.id,
                          "target_path": payload["target_path"], "conflict": conflict, "restore_run_id": cmd.run_id})
    session.commit()
    return RedirectResponse(f"/runs/{cmd.run_id}?notice=restore-queued", status_code=303)


__all__ = ["router"]
