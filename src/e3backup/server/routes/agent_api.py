"""The agent's calls: next_run, update_run, push_events, commands, disk reports and proofs.

Every call is authenticated by the agent token and scoped to that agent: a run or command of
another agent is answered 404.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

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
from e3backup.server.deps import CurrentAgent, SessionDep, StateDep
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


def _own_run(session: SessionDep, agent: Agent, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None or run.agent_id != agent.id:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    return run


@router.post("/next_run")
def next_run(
    request: Request,
    agent: CurrentAgent,
    session: SessionDep,
    state: StateDep,
    body: NextRunRequest | None = None,
    run_id: Id | None = None,
    kind: RunKind | None = None,
) -> NextRunResponse:
    """The agent's next queued run with everything it needs (secrets included), now running.

    ``?run_id=`` asks for a specific queued run (a restore command's run); ``?kind=backup``
    only hands out runs of that kind (the agent's poll loop leaves command runs to its command
    loop, which claims them by ``run_id``).
    """
    if body is not None:
        if body.agent_version is not None:
            agent.agent_version = body.agent_version
        if body.os_version is not None:
            agent.os_version = body.os_version
        if body.engines is not None:
            agent.engines = [e.value for e in body.engines]
        if body.platform is not None:
            agent.platform = body.platform
        if body.update_event is not None:
            agent.update_event = body.update_event.model_dump(mode="json")
            log.info("agent %s self-update: %s %s %s", agent.id, body.update_event.code, body.update_event.version,
                     body.update_event.message)
    update = releases_svc.offer(session, agent, body)
    run = runs_svc.claim_next_run(session, agent, state.clock.now(), run_id, kind)
    if run is None:
        session.commit()
        return NextRunResponse(run=None, update=update)
    result = NextRunResponse(run=runs_svc.assignment(session, state.box, run, _gateway_access(request, agent, state)),
                             update=update)
    session.commit()
    return result


def _gateway_access(request: Request, agent: Agent, state: ServerState) -> runs_svc.GatewayAccess | None:
    """The agent's gateway token, derived from the agent token it called with; its hash is stored
    (at enrollment; here for an agent enrolled before the gateway existed)."""
    if not state.settings.gateway_enabled:
        return None
    token = gateway_token(request.headers["authorization"].partition(" ")[2].strip())
    if agent.gateway_token_hash is None:
        agent.gateway_token_hash = hash_token(token)
    return runs_svc.GatewayAccess(state.settings.gateway_url or str(request.base_url), token)


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


@router.post("/update_run")
def update_run(
    body: UpdateRunRequest, agent: CurrentAgent, session: SessionDep, state: StateDep
) -> UpdateRunResponse:
    run = runs_svc.apply_update(session, _own_run(session, agent, body.run_id), body, state.clock.now())
    session.commit()
    return UpdateRunResponse(run=runs_svc.status_view(run), cancel_requested=run.cancel_requested)


@router.post("/push_events")
def push_events(
    body: PushEventsRequest, agent: CurrentAgent, session: SessionDep, state: StateDep
) -> PushEventsResponse:
    run = _own_run(session, agent, body.run_id)
    result = events_svc.push_events(session, run, body.events, state.clock.now(), state.settings.max_events_per_run)
    session.commit()
    return result


@router.post("/poll_commands")
def poll_commands(agent: CurrentAgent, session: SessionDep) -> PollCommandsResponse:
    return PollCommandsResponse(
        commands=[commands_svc.command_view(c) for c in commands_svc.pending(session, agent)]
    )


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
    proof = proofs_svc.record(session, _own_run(session, agent, body.run_id), body, state.clock.now())
    session.commit()
    return proofs_svc.view(proof)


__all__ = ["router"]
