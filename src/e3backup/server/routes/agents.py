"""Agents as users see them: list with online state, revoke, and their disks and volumes.

``POST /api/agents/{id}/disks/refresh`` asks the agent for a fresh disk list (a ``list_disks``
command) and waits for the answer up to ``disk_list_timeout_seconds`` (30 s). If the agent does
not answer in time the reply is 504 with the ``command_id``: the browser retries with
``?command_id=`` to keep waiting on the same command (the job wizard tries up to 3 times).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from e3backup.api.common import CommandType, Id
from e3backup.server.db.models import Agent, Command
from e3backup.server.deps import (
    CurrentUser,
    ManagerUser,
    OperatorUser,
    SessionDep,
    StateDep,
    VisibleAgent,
    client_ip,
)
from e3backup.server.routes.agent_answers import ask_agent
from e3backup.server.schemas import AgentDisks, AgentPublic, AgentUpdate, DiskRefreshPending
from e3backup.server.services import agents as svc
from e3backup.server.services import audit, controls
from e3backup.server.services import commands as commands_svc

router = APIRouter(prefix="/api/agents", tags=["agents"])


@router.get("")
def list_agents(
    session: SessionDep, state: StateDep, user: CurrentUser, tenant_id: Id | None = None
) -> list[AgentPublic]:
    query = select(Agent).where(Agent.deleted_at.is_(None)).order_by(Agent.hostname, Agent.id)
    if not user.is_admin:
        query = query.where(Agent.tenant_id == user.tenant_id)
    elif tenant_id is not None:
        query = query.where(Agent.tenant_id == tenant_id)
    now = state.clock.now()
    offline = state.settings.agent_offline_after_seconds
    return [svc.agent_public(a, now, offline) for a in session.scalars(query)]


@router.get("/{agent_id}")
def get_agent(agent: VisibleAgent, state: StateDep) -> AgentPublic:
    return svc.agent_public(agent, state.clock.now(), state.settings.agent_offline_after_seconds)


@router.patch("/{agent_id}")
def update_agent(
    body: AgentUpdate, agent: VisibleAgent, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> AgentPublic:
    """Rename (the console's name; the hostname stays) or pause (no new backup runs) the agent."""
    changes = controls.update_agent(agent, body)
    audit.record(session, state.clock.now(), "agent.update", user=user, tenant_id=agent.tenant_id,
                 target_type="agent", target_id=agent.id, ip=client_ip(request),
                 details={"hostname": agent.hostname, **changes})
    session.commit()
    return svc.agent_public(agent, state.clock.now(), state.settings.agent_offline_after_seconds)


@router.delete("/{agent_id}", status_code=204)
def delete_agent(
    agent: VisibleAgent, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> None:
    """Revoke and hide the agent; its jobs stop, their runs and snapshots stay."""
    controls.delete_agent(session, agent, state.clock.now())
    audit.record(session, state.clock.now(), "agent.delete", user=user, tenant_id=agent.tenant_id,
                 target_type="agent", target_id=agent.id, ip=client_ip(request), details={"hostname": agent.hostname})
    session.commit()


@router.post("/{agent_id}/revoke")
def revoke_agent(
    agent: VisibleAgent, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> AgentPublic:
    """The agent's token stops working at once; it must enroll again."""
    agent.revoked = True
    audit.record(session, state.clock.now(), "agent.revoke", user=user, tenant_id=agent.tenant_id,
                 target_type="agent", target_id=agent.id, ip=client_ip(request), details={"hostname": agent.hostname})
    session.commit()
    return svc.agent_public(agent, state.clock.now(), state.settings.agent_offline_after_seconds)


@router.get("/{agent_id}/disks")
def get_disks(agent: VisibleAgent) -> AgentDisks:
    """The disks and volumes the agent last reported (may be stale; see ``reported_at``)."""
    return svc.agent_disks(agent)


@router.post(
    "/{agent_id}/disks/refresh",
    response_model=AgentDisks,
    responses={504: {"model": DiskRefreshPending}, 502: {"description": "the agent reported an error"}},
)
async def refresh_disks(
    agent: VisibleAgent,
    session: SessionDep,
    state: StateDep,
    user: OperatorUser,
    command_id: Id | None = None,
) -> AgentDisks | JSONResponse:
    agent_id, user_id = agent.id, user.id
    session.close()  # hold no connection while waiting

    def queue(s: Session, row: Agent) -> Command:
        return commands_svc.queue(s, row, CommandType.LIST_DISKS, state.clock.now(), user_id=user_id)

    cmd = await ask_agent(state, agent_id, command_id, CommandType.LIST_DISKS, queue, "list disks")
    if isinstance(cmd, JSONResponse):
        return cmd

    def fresh() -> AgentDisks:
        with state.sessions() as s:
            row = s.get(Agent, agent_id)
            assert row is not None
            return svc.agent_disks(row)

    return await run_in_threadpool(fresh)
