"""Asking an agent something and waiting for its answer (the disk list, a folder listing).

The server queues the command, then waits up to ``disk_list_timeout_seconds`` (30 s) without
holding a database connection. On time-out the reply is 504 with the ``command_id``; the client
asks again with ``?command_id=`` and waits on the same command instead of queueing another.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from e3backup.api.common import CommandStatus, CommandType
from e3backup.server.cluster.bus import command_key
from e3backup.server.db.models import Agent, Command
from e3backup.server.schemas import DiskRefreshPending
from e3backup.server.services import commands as commands_svc
from e3backup.server.state import ServerState

QueueCommand = Callable[[Session, Agent], Command]
"""Queues the new command (and records what else goes with it) in the given session."""


async def ask_agent(
    state: ServerState, agent_id: int, command_id: int | None, type_: CommandType, queue: QueueCommand, what: str
) -> Command | JSONResponse:
    """The agent's final answer (the ``Command``), or the 504 reply to retry with; a failed
    command is a 502 that says the agent could not ``what``."""

    def start() -> int:
        with state.sessions() as s:
            if command_id is not None:
                cmd = s.get(Command, command_id)
                if cmd is None or cmd.agent_id != agent_id or cmd.type != type_.value:
                    raise HTTPException(status_code=404, detail=f"command {command_id} not found")
                return cmd.id
            row = s.get(Agent, agent_id)
            assert row is not None
            if row.revoked:
                raise HTTPException(status_code=409, detail=f"agent {agent_id} is revoked")
            cmd = queue(s, row)
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

    settings = state.settings
    # woken by the commit of the agent's answer, on whichever replica it arrives (cluster.bus)
    event = state.waiters.register(command_key(cmd_id))
    try:
        done = await commands_svc.wait_until_final(
            load_status, event, settings.disk_list_timeout_seconds, settings.command_poll_interval_seconds
        )
    finally:
        state.waiters.unregister(command_key(cmd_id), event)
    if not done:
        body = DiskRefreshPending(
            detail=f"agent {agent_id} did not answer within {settings.disk_list_timeout_seconds:g} s; "
            "retry with command_id",
            command_id=cmd_id,
        )
        return JSONResponse(status_code=504, content=body.model_dump())
    cmd = await run_in_threadpool(load)
    if cmd.status == CommandStatus.FAILED.value:
        raise HTTPException(status_code=502, detail=f"agent could not {what}: {cmd.error or 'no reason given'}")
    return cmd


__all__ = ["QueueCommand", "ask_agent"]
