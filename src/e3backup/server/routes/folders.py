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
from sqlalchemy.orm import Session

from e3backup.api.common import CommandType, Id
from e3backup.api.folders import FolderListing
from e3backup.server.db.models import Agent, Command, User
from e3backup.server.deps import OperatorUser, SessionDep, StateDep, VisibleAgent, client_ip
from e3backup.server.routes.agent_answers import ask_agent
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

    def queue(s: Session, row: Agent) -> Command:
        cmd = commands_svc.queue(s, row, CommandType.LIST_FOLDER, state.clock.now(), {"path": path},
                                 user_id=user_id)
        audit.record(s, state.clock.now(), "agent.list_folder", user=s.get(User, user_id), tenant_id=row.tenant_id,
                     target_type="agent", target_id=agent_id, ip=ip, details={"path": path})
        return cmd

    what = f"list {path or 'its top level'}"
    cmd = await ask_agent(state, agent_id, command_id, CommandType.LIST_FOLDER, queue, what)
    if isinstance(cmd, JSONResponse):
        return cmd
    return FolderListing.model_validate(cmd.result or {})


__all__ = ["router"]
