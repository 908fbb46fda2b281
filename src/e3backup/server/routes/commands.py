"""Commands users queue for agents (restore, maintenance, hyperv_restore) and their results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import ValidationError
from sqlalchemy import select

from e3backup.api.common import CommandType, Engine, RunKind
from e3backup.api.requests import RestoreRequest
from e3backup.server.db.models import Command, Job
from e3backup.server.deps import (
    OperatorUser,
    SessionDep,
    StateDep,
    VisibleAgent,
    VisibleCommand,
    can_see_tenant,
)
from e3backup.server.problems import FieldError
from e3backup.server.schemas import CommandCreate, CommandPublic
from e3backup.server.services import audit
from e3backup.server.services import commands as svc
from e3backup.server.services import runs as runs_svc

router = APIRouter(tags=["commands"])


def sync_files_where(destination: dict[str, object]) -> str:
    """Where a sync job's files are, in words (the destination as stored: no secrets)."""
    if destination.get("type") == "s3":
        prefix = str(destination.get("prefix") or "").strip("/")
        under = f" under the prefix {prefix}/" if prefix else ""
        return (f"its files are plain objects in bucket {destination.get('bucket')}{under} at "
                f"{destination.get('endpoint')}, readable with any S3 tool")
    return f"its files are plain files in the folder {destination.get('path')} on the agent machine"

_RUN_KIND = {
    CommandType.RESTORE: RunKind.RESTORE,
    CommandType.HYPERV_RESTORE: RunKind.RESTORE,
    CommandType.MAINTENANCE: RunKind.MAINTENANCE,
}


def _auditable(payload: dict[str, Any]) -> dict[str, Any]:
    """What of a command's payload goes into the audit log (where, what; never more than that)."""
    keys = ("snapshot_id", "target_path", "target_disk", "format", "conflict", "mode", "source_run_id")
    out = {k: payload[k] for k in keys if k in payload}
    if payload.get("paths"):
        out["paths"] = list(payload["paths"])[:100]
    return out


def _check_restore(payload: dict[str, Any]) -> None:
    """The agent reads the payload as a ``RestoreRequest``: refuse here what it would refuse."""
    try:
        RestoreRequest.model_validate({"type": CommandType.RESTORE.value, **payload})
    except ValidationError as e:
        first = e.errors()[0]
        raise FieldError(".".join(["payload", *(str(p) for p in first["loc"])]), first["msg"]) from None


@router.post("/api/agents/{agent_id}/commands", status_code=201)
def create_command(
    body: CommandCreate, agent: VisibleAgent, session: SessionDep, state: StateDep, user: OperatorUser
) -> CommandPublic:
    """Queue a command. Restore and maintenance get a run (``run_id``) the agent reports on."""
    if agent.revoked:
        raise HTTPException(status_code=409, detail=f"agent {agent.id} is revoked")
    job = session.get(Job, body.job_id)
    if job is None or not can_see_tenant(user, job.tenant_id) or job.tenant_id != agent.tenant_id:
        raise FieldError("job_id", f"no job {body.job_id} of this agent's tenant")
    if job.engine == Engine.SYNC.value:
        raise FieldError("job_id", f"job {job.id} is a sync job: {sync_files_where(job.destination)}; it has no "
                         "snapshots to restore and no repository to maintain")
    if body.type is CommandType.MAINTENANCE and job.storage_mode == "gateway":
        raise FieldError("type", f"job {job.id} writes through the repository gateway: its agent may not delete, so "
                         "its forget, prune and check run in the server's maintenance worker (scheduled), not on "
                         "the agent")
    if body.type is CommandType.RESTORE:
        if not str(body.payload.get("snapshot_id", "")).strip():
            raise FieldError("payload.snapshot_id", "required for restore")
        _check_restore(body.payload)
    now = state.clock.now()
    run = runs_svc.create_run(
        session,
        job,
        now,
        trigger="command",
        kind=_RUN_KIND[body.type],
        agent_id=agent.id,
        restore={"type": body.type.value, **body.payload},
    )
    cmd = svc.queue(
        session, agent, body.type, now, body.payload, run_id=run.id, job_id=job.id, user_id=user.id
    )
    audit.record(session, now, f"{body.type.value}.queue", user=user, tenant_id=agent.tenant_id, target_type="run",
                 target_id=run.id, details={"job_id": job.id, "agent_id": agent.id, **_auditable(body.payload)})
    session.commit()
    return svc.command_public(cmd)


@router.get("/api/agents/{agent_id}/commands")
def list_commands(
    agent: VisibleAgent, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[CommandPublic]:
    rows = session.scalars(
        select(Command).where(Command.agent_id == agent.id).order_by(Command.id.desc()).limit(limit)
    )
    return [svc.command_public(c) for c in rows]


@router.get("/api/commands/{command_id}")
def get_command(cmd: VisibleCommand) -> CommandPublic:
    return svc.command_public(cmd)
