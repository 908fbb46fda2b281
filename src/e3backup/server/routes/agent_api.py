"""The agent's calls: next_run, update_run, push_events, commands, disk reports and proofs.

Every call is authenticated by the agent token and scoped to that agent: a run or command of
another agent is answered 404.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel
from sqlalchemy import Row, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from e3backup.api.agent import (
    CommandAck,
    CommandView,
    DiskReport,
    DiskReportResponse,
    NextRunRequest,
    NextRunResponse,
    PollCommandsResponse,
    PushEventsRequest,
    PushEventsResponse,
    UpdateRunRequest,
    UpdateRunResponse,
)
from e3backup.api.common import Id, RunKind
from e3backup.api.proofs import ProofReport, ProofView
from e3backup.server.db.models import Agent, AgentRelease, Run, Tenant
from e3backup.server.deps import AgentCall, AgentCaller, CurrentAgent, SessionDep, StateDep, agent_transaction
from e3backup.server.security.tokens import gateway_token, hash_token
from e3backup.server.services import agent_releases as releases_svc
from e3backup.server.services import agents as agents_svc
from e3backup.server.services import commands as commands_svc
from e3backup.server.services import events as events_svc
from e3backup.server.services import proofs as proofs_svc
from e3backup.server.services import runs as runs_svc
from e3backup.server.state import ServerState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/agent", tags=["agent"])


def _own_run(session: Session, agent_id: int, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None or run.agent_id != agent_id:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    return run


JSON = "application/json"


def _json(model: BaseModel) -> Response:
    """The answer as FastAPI would send it, without its second validation of the model."""
    return Response(model.model_dump_json(), media_type=JSON)


# The agent's frequent calls (next_run, update_run, push_events, poll_commands) are async
# handlers that do all their database work in one thread-pool hop, authenticated by ``AgentCall``
# (the token cache) and without an ORM object on an idle poll: per-request CPU is what limits
# how many agents a replica holds (docs/benchmarks.md).

_IDLE = NextRunResponse(run=None, update=None).model_dump_json()  # a new Response each time: FastAPI edits it


@router.post("/next_run", response_model=NextRunResponse)
async def next_run(
    request: Request,
    agent: AgentCall,
    state: StateDep,
    body: NextRunRequest | None = None,
    run_id: Id | None = None,
    kind: RunKind | None = None,
) -> Response:
    """The agent's next queued run with everything it needs (secrets included), now running.

    ``?run_id=`` asks for a specific queued run (a restore command's run); ``?kind=backup``
    only hands out runs of that kind (the agent's poll loop leaves command runs to its command
    loop, which claims them by ``run_id``). Also the agent's heartbeat (``last_seen``, versions).
    """
    gateway_base = (state.settings.gateway_url or str(request.base_url)) if state.settings.gateway_enabled else None
    return await run_in_threadpool(handle_next_run, state, agent, gateway_base, body, run_id, kind)


def handle_next_run(state: ServerState, caller: AgentCaller, gateway_base: str | None, body: NextRunRequest | None,
              run_id: int | None, kind: RunKind | None) -> Response:
    columns = (Agent.paused, Agent.agent_version, Agent.os_version, Agent.engines, Agent.platform,
               Agent.gateway_token_hash)
    with agent_transaction(state, caller, *columns) as (session, row):
        changes = _reported(caller, row, body)
        if changes:
            session.connection().execute(update(Agent).where(Agent.id == caller.id).values(**changes))
        offer = releases_svc.offer(session, caller.tenant_id, body)
        run = runs_svc.claim_next_run(session, caller.id, row.paused, state.clock.now(), run_id, kind)
        if run is None:
            return _json(NextRunResponse(run=None, update=offer)) if offer else Response(_IDLE, media_type=JSON)
        gateway = None
        if gateway_base is not None:
            # the agent's gateway token, derived from the agent token it called with; its hash is
            # stored at enrollment, and here for an agent enrolled before the gateway existed
            token = gateway_token(caller.token)
            if row.gateway_token_hash is None:
                session.connection().execute(
                    update(Agent).where(Agent.id == caller.id).values(gateway_token_hash=hash_token(token))
                )
            gateway = runs_svc.GatewayAccess(gateway_base, token)
        return _json(NextRunResponse(run=runs_svc.assignment(session, state.box, run, gateway), update=offer))


def _reported(caller: AgentCaller, row: Row[Any], body: NextRunRequest | None) -> dict[str, Any]:
    """What the poll's body changes in the agent's row (versions, engines, platform, update event)."""
    if body is None:
        return {}
    changes: dict[str, Any] = {}
    if body.agent_version is not None and body.agent_version != row.agent_version:
        changes["agent_version"] = body.agent_version
    if body.os_version is not None and body.os_version != row.os_version:
        changes["os_version"] = body.os_version
    if body.engines is not None and [e.value for e in body.engines] != row.engines:
        changes["engines"] = [e.value for e in body.engines]
    if body.platform is not None and body.platform != row.platform:
        changes["platform"] = body.platform
    if body.update_event is not None:
        changes["update_event"] = body.update_event.model_dump(mode="json")
        log.info("agent %s self-update: %s %s %s", caller.id, body.update_event.code, body.update_event.version,
                 body.update_event.message)
    return changes


@router.get("/releases/{release_id}")
def download_release(release_id: Id, agent: CurrentAgent, session: SessionDep, state: StateDep) -> FileResponse:
    """The file of a release offered to this agent (the one its tenant wants; 404 otherwise)."""
    release = session.get(AgentRelease, release_id)
    tenant = session.get(Tenant, agent.tenant_id)
    if release is None or tenant is None or tenant.agent_version_wanted != release.version:
        raise HTTPException(status_code=404, detail=f"release {release_id} not found")
    path = releases_svc.release_file(state.settings.data_dir, release)
    if not path.is_file():
        raise HTTPException(status_code=404, detail=f"release {release_id} has no file on this server")
    return FileResponse(path, media_type="application/octet-stream", filename=f"e3backup-{release.version}")


@router.post("/update_run", response_model=UpdateRunResponse)
async def update_run(body: UpdateRunRequest, agent: AgentCall, state: StateDep) -> Response:
    return await run_in_threadpool(_update_run, state, agent, body)


def _update_run(state: ServerState, caller: AgentCaller, body: UpdateRunRequest) -> Response:
    with agent_transaction(state, caller) as (session, _):
        run = runs_svc.apply_update(session, _own_run(session, caller.id, body.run_id), body, state.clock.now())
        session.commit()
        return _json(UpdateRunResponse(run=runs_svc.status_view(run), cancel_requested=run.cancel_requested))


@router.post("/push_events", response_model=PushEventsResponse)
async def push_events(body: PushEventsRequest, agent: AgentCall, state: StateDep) -> Response:
    return await run_in_threadpool(_push_events, state, agent, body)


def _push_events(state: ServerState, caller: AgentCaller, body: PushEventsRequest) -> Response:
    with agent_transaction(state, caller) as (session, _):
        run = _own_run(session, caller.id, body.run_id)
        result = events_svc.push_events(session, run, body.events, state.clock.now(),
                                        state.settings.max_events_per_run)
        session.commit()
        return _json(result)


_NO_COMMANDS = PollCommandsResponse(commands=[]).model_dump_json()


@router.post("/poll_commands", response_model=PollCommandsResponse)
async def poll_commands(agent: AgentCall, state: StateDep) -> Response:
    return await run_in_threadpool(handle_poll_commands, state, agent)


def handle_poll_commands(state: ServerState, caller: AgentCaller) -> Response:
    with agent_transaction(state, caller) as (session, _):
        if not commands_svc.has_pending(session, caller.id):  # nearly every poll: one indexed query
            return Response(_NO_COMMANDS, media_type=JSON)
        return _json(PollCommandsResponse(
            commands=[commands_svc.command_view(c) for c in commands_svc.pending(session, caller.id)]
        ))


@router.post("/ack_command")
def ack_command(body: CommandAck, agent: CurrentAgent, session: SessionDep, state: StateDep) -> CommandView:
    cmd = commands_svc.acknowledge(session, agent, body, state.clock.now())
    session.commit()  # wakes whoever waits on the command, on any replica (cluster.bus)
    return commands_svc.command_view(cmd)


@router.post("/report_disks")
def report_disks(
    body: DiskReport, agent: CurrentAgent, session: SessionDep, state: StateDep
) -> DiskReportResponse:
    now = state.clock.now()
    agents_svc.store_disks(agent, body, now)
    session.commit()
    return DiskReportResponse(reported_at=now)


@router.post("/report_proof")
def report_proof(body: ProofReport, agent: CurrentAgent, session: SessionDep, state: StateDep) -> ProofView:
    """A proof of restore of one of this agent's backup runs (``docs/proof.md``)."""
    proof = proofs_svc.record(session, _own_run(session, agent.id, body.run_id), body, state.clock.now())
    session.commit()
    return proofs_svc.view(proof)


__all__ = ["handle_next_run", "handle_poll_commands", "router"]
