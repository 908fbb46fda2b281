"""Commands for agents: queued by users (or the server), polled and acknowledged by the agent."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from e3backup.api.agent import CommandAck, CommandView, DiskReport
from e3backup.api.common import CommandStatus, CommandType
from e3backup.server.db.models import Agent, Command
from e3backup.server.errors import Conflict, FieldError, NotFound
from e3backup.server.schemas import CommandPublic
from e3backup.server.services.agents import store_disks

FINAL = {CommandStatus.COMPLETED.value, CommandStatus.FAILED.value}


def queue(
    session: Session,
    agent: Agent,
    type_: CommandType,
    now: datetime,
    payload: dict[str, Any] | None = None,
    run_id: int | None = None,
    job_id: int | None = None,
    user_id: int | None = None,
) -> Command:
    cmd = Command(
        tenant_id=agent.tenant_id,
        agent_id=agent.id,
        type=type_.value,
        status=CommandStatus.PENDING.value,
        run_id=run_id,
        job_id=job_id,
        payload=payload or {},
        created_by=user_id,
        created_at=now,
    )
    session.add(cmd)
    session.flush()
    return cmd


def has_pending(session: Session, agent_id: int) -> bool:
    """Whether the agent has a pending command: one indexed query, no ORM object (the answer to
    nearly every one of an agent's polls is no)."""
    found = session.connection().execute(
        select(Command.id).where(Command.agent_id == agent_id, Command.status == CommandStatus.PENDING.value).limit(1)
    ).first()
    return found is not None


def pending(session: Session, agent_id: int) -> list[Command]:
    return list(
        session.scalars(
            select(Command)
            .where(Command.agent_id == agent_id, Command.status == CommandStatus.PENDING.value)
            .order_by(Command.id)
        )
    )


def acknowledge(session: Session, agent: Agent, ack: CommandAck, now: datetime) -> Command:
    cmd = session.get(Command, ack.command_id)
    if cmd is None or cmd.agent_id != agent.id:
        raise NotFound(f"command {ack.command_id} not found")
    if ack.status is CommandStatus.PENDING:
        raise FieldError("status", "must be acknowledged, completed or failed")
    if cmd.status in FINAL:
        if ack.status.value == cmd.status:
            return cmd  # a resent final acknowledgement
        raise Conflict(f"command {cmd.id} already {cmd.status}")
    if ack.status is CommandStatus.ACKNOWLEDGED:
        cmd.status = CommandStatus.ACKNOWLEDGED.value
        cmd.acknowledged_at = now
        return cmd
    if cmd.acknowledged_at is None:
        cmd.acknowledged_at = now
    if ack.status is CommandStatus.COMPLETED and cmd.type == CommandType.LIST_DISKS.value:
        try:
            report = DiskReport.model_validate(ack.result or {})
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise FieldError(f"result.{loc}", first["msg"]) from e
        store_disks(agent, report, now)
        cmd.result = report.model_dump(mode="json")
    else:
        cmd.result = ack.result
    cmd.status = ack.status.value
    cmd.error = ack.error
    cmd.completed_at = now
    return cmd


def command_view(cmd: Command) -> CommandView:
    return CommandView.model_validate(cmd)


def command_public(cmd: Command) -> CommandPublic:
    return CommandPublic.model_validate(cmd)


async def wait_until_final(
    load_status: Any, event: asyncio.Event, timeout: float, poll_interval: float
) -> bool:
    """Wait for a command to reach a final state: woken by ``event`` or by re-reading it.

    ``load_status`` is an async callable returning the command's status. True if it finished.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await load_status() in FINAL:
            return True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=min(remaining, poll_interval))
        event.clear()


__all__ = ["FINAL", "acknowledge", "command_public", "command_view", "pending", "queue", "wait_until_final"]
