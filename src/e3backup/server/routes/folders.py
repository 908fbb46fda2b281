"""An agent's folders for the job wizard: ``POST /api/agents/{id}/folders?path=``.

The server queues a ``list_folder`` command and waits for the agent's answer up to
``disk_list_timeout_seconds`` (30 s), exactly like the disk list: on time-out the reply is 504
with the ``command_id``, and the browser retries with ``?command_id=`` (3 attempts in all).
The listing is recorded in the audit log (``agent.list_folder``) with the path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from e3backup.api.common import CommandStatus, CommandType, Id
from e3backup.api.folders import FolderListing
from e3backup.server.db.models import Agent, Command, User
from e3backup.server.deps import OperatorUser, SessionDep, StateDep, VisibleAgent, client_ip
from e3backup.server.schemas import DiskRefreshPending
from e3backup.server.services import audit
from e3backup.server.services import commands as commands_svc

router = APIRouter(prefix="/api/agents", tags=["agents"])
MAX_PATH = 4096


@router.post(
    "/{agent_id}/folders",
    response_model=FolderListing,
    responses={504: {"model": DiskRefreshPending}, 502: {"description": "the agent could not list it"}},
)
async def list_folder(
    agent: VisibleAgent,
    session: SessionDep,
    state: StateDep,
    user: OperatorUser,
    request: Request,
    path: Annotated[str, Query(max_length=MAX_PATH)] = "",
    command_id: Id | None = None,
) -> FolderListing | JSONResponse:
    if "\x00" in path:
        raise HTTPException(status_code=422, detail="path contains a NUL byte")
    agent_id, user_id = agent.id, user.id
    ip = client_ip(request)
    session.close()  # hold no connection while waiting

    def start() -> int:
        with state.sessions() as s:
            if command_id is not None:
                cmd = s.get(Command, command_id)
                if cmd is None or cmd.agent_id != agent_id or cmd.type != CommandType.LIST_FOLDER.value:
                    raise HTTPException(status_code=404, detail=f"command {command_id} not found")
                return cmd.id
            row = s.get(Agent, agent_id)
            assert row is not None
            if row.revoked:
                raise HTTPException(status_code=409, detail=f"agent {agent_id} is revoked")
            actor = s.get(User, user_id)
            cmd = commands_svc.queue(s, row, CommandType.LIST_FOLDER, state.clock.now(), {"path": path},
                                     user_id=user_id)
            audit.record(s, state.clock.now(), "agent.list_folder", user=actor, tenant_id=row.tenant_id,
                         target_type="agent", target_id=agent_id, ip=ip, details={"path": path})
            s.commit()
            return cmd.id

    cmd_id = await run_in_threadpool(start)

    def load() -> Command:
        with state.sessions() as s:
            cmd = s.get(Command, cmd_id)
            assert cmd is not None
            return cmd

    async def load_status() -> str:
        return (await run_in_threadpool(load)).status

    event = state.waiters.register(cmd_id)
    try:
        done = await commands_svc.wait_until_final(
            load_status, event, state.settings.disk_list_timeout_seconds, state.settings.command_poll_interval_seconds
        )
    finally:
        state.waiters.unregister(cmd_id, event)
    if not done:
        body = DiskRefreshPending(
            detail=f"agent {agent_id} did not answer within {state.settings.disk_list_timeout_seconds:g} s; "
            "retry with command_id",
            command_id=cmd_id,
        )
        return JSONResponse(status_code=504, content=body.model_dump())
    cmd = await run_in_threadpool(load)
    if cmd.status == CommandStatus.FAILED.value:
        raise HTTPException(status_code=502, detail=f"agent: {cmd.error or 'no reason given'}")
    return FolderListing.model_validate(cmd.result or {})


__all__ = ["router"]
