"""Recovery sessions for bare-metal restores.

An administrator (of the tenant, or MSP staff) creates a session for a disk image job's
snapshot: a restore run (no agent; the recovery console does the work) and a session token
shown once. Only administrators, because the console receives the job's destination secrets
(it reads the repository itself), which operators never see; only disk image jobs, because a
bare-metal restore writes a whole disk. The console then calls the endpoints below with
``Authorization: Bearer <session token>`` and the run's ``run_id``; each call slides the expiry.
The token ends with its run (final state), with its creator (disabled) and on revoke (see
:mod:`e3backup.server.services.recovery`).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request

from e3backup.api.agent import (
    PushEventsRequest,
    PushEventsResponse,
    RunStatusView,
    UpdateRunRequest,
    UpdateRunResponse,
)
from e3backup.api.common import Engine, RunKind, RunStatus
from e3backup.api.recovery import (
    PollCancelResponse,
    RecoveryRunRequest,
    RecoveryRunResponse,
    RefreshSessionResponse,
    RunEventsRequest,
    RunEventsResponse,
)
from e3backup.server.db.models import Agent, Job, RecoverySession, Run
from e3backup.server.deps import (
    ManagerUser,
    RecoveryAuth,
    SessionDep,
    StateDep,
    VisibleRun,
    can_see_tenant,
    client_ip,
)
from e3backup.server.problems import FieldError
from e3backup.server.routes.auth import too_many
from e3backup.server.schemas import (
    RecoveryCodeCreate,
    RecoveryCodePublic,
    RecoveryRedeem,
    RecoveryRevoked,
    RecoverySessionCreate,
    RecoverySessionPublic,
)
from e3backup.server.security.ratelimit import Attempt
from e3backup.server.services import events as events_svc
from e3backup.server.services import recovery as svc
from e3backup.server.services import recovery_codes as codes
from e3backup.server.services import runs as runs_svc

log = logging.getLogger(__name__)
user_router = APIRouter(prefix="/api/recovery", tags=["recovery"])
router = APIRouter(prefix="/api/recovery", tags=["recovery"])


@user_router.post("/codes", status_code=201)
def create_code(
    body: RecoveryCodeCreate, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> RecoveryCodePublic:
    """A one-time code for one of the agent's image snapshots ("Recover this machine")."""
    agent = session.get(Agent, body.agent_id)
    if agent is None or not can_see_tenant(user, agent.tenant_id):
        raise FieldError("agent_id", f"no agent {body.agent_id}")
    row, code = codes.issue(
        session, agent, body.snapshot_id, user, state.clock.now(), state.settings.recovery_code_minutes,
        client_ip(request),
    )
    session.commit()
    log.info("recovery code issued for agent %s snapshot %s by user %s", agent.id, body.snapshot_id[:12], user.id)
    return RecoveryCodePublic(code=code, expires_at=row.expires_at, agent_id=agent.id, snapshot_id=row.snapshot_id)


@router.post("/redeem", status_code=201)
def redeem_code(
    body: RecoveryRedeem, request: Request, session: SessionDep, state: StateDep
) -> RecoverySessionPublic:
    """The console's sign-in: the code (once) for the restore run and its session token.
    Rate limited per client address, like enrollment: a wrong guess counts against it."""
    attempt = state.enroll_limiter.begin(f"recovery-code:{client_ip(request)}")
    if not isinstance(attempt, Attempt):
        raise too_many(attempt, "failed recovery codes")
    result = None
    try:
        result = codes.redeem(session, body.code, state.clock.now(), client_ip(request))
    except codes.CodeRefused as e:
        log.warning("recovery code refused from %s: %s", client_ip(request), e)
        raise HTTPException(status_code=401, detail=str(e)) from None
    finally:
        attempt.end(failed=result is None)
    run, row, token = result
    session.commit()
    log.info("recovery code redeemed: run %s for agent %s", run.id, (run.restore or {}).get("agent_id"))
    return RecoverySessionPublic(run_id=run.id, session_token=token, session_expires_at=row.expires_at)


@user_router.post("/sessions", status_code=201)
def create_session(
    body: RecoverySessionCreate, session: SessionDep, state: StateDep, user: ManagerUser
) -> RecoverySessionPublic:
    job = session.get(Job, body.job_id)
    if job is None or not can_see_tenant(user, job.tenant_id):
        raise FieldError("job_id", f"no job {body.job_id}")
    if job.engine != Engine.DISK_IMAGE.value:
        raise FieldError("job_id", f"job {job.id} is a {job.engine} job: recovery restores disk images only")
    now = state.clock.now()
    restore = {"type": "bare_metal", "snapshot_id": body.snapshot_id, "target_disk": body.target_disk}
    run = runs_svc.create_run(session, job, now, trigger="recovery", kind=RunKind.RESTORE, restore=restore)
    run.agent_id = None  # the recovery console, not an agent, runs it
    row, token = svc.create_session(session, run, user.id, now)
    session.commit()
    return RecoverySessionPublic(run_id=run.id, session_token=token, session_expires_at=row.expires_at)


@user_router.post("/sessions/{run_id}/revoke")
def revoke_session(run: VisibleRun, session: SessionDep, state: StateDep, _user: ManagerUser) -> RecoveryRevoked:
    """End the recovery console's token for this run at once; the run, if still going, is
    cancelled (nothing can report on it any more)."""
    if run.trigger != "recovery":
        raise HTTPException(status_code=409, detail=f"run {run.id} is not a recovery run")
    count = svc.revoke(session, run, state.clock.now())
    session.commit()
    return RecoveryRevoked(run_id=run.id, sessions_ended=count, run_status=RunStatus(run.status))


def _run(session: SessionDep, auth: RecoverySession) -> Run:
    run = session.get(Run, auth.run_id)
    assert run is not None  # the session row cascades with its run
    return run


@router.post("/get_run")
def get_run(
    request: Request, body: RecoveryRunRequest, auth: RecoveryAuth, session: SessionDep, state: StateDep
) -> RecoveryRunResponse:
    """The restore run with its destination (secrets included), for the console to start. A
    gateway-mode job's repository is read through the gateway with the session's own token,
    which is read-only there (``gateway.access``); the storage credentials are never handed out."""
    run = _run(session, auth)
    gateway = None
    if state.settings.gateway_enabled:
        token = request.headers["authorization"].partition(" ")[2].strip()
        gateway = runs_svc.GatewayAccess(state.settings.gateway_url or str(request.base_url), token)
    return RecoveryRunResponse(
        run=runs_svc.assignment(session, state.box, run, gateway), session_expires_at=auth.expires_at
    )


@router.post("/update_run")
def update_run(
    body: UpdateRunRequest, auth: RecoveryAuth, session: SessionDep, state: StateDep
) -> UpdateRunResponse:
    run = runs_svc.apply_update(session, _run(session, auth), body, state.clock.now())
    session.commit()
    return UpdateRunResponse(run=runs_svc.status_view(run), cancel_requested=run.cancel_requested)


@router.post("/push_events")
def push_events(
    body: PushEventsRequest, auth: RecoveryAuth, session: SessionDep, state: StateDep
) -> PushEventsResponse:
    run, limit = _run(session, auth), state.settings.max_events_per_run
    result = events_svc.push_events(session, run, body.events, state.clock.now(), limit)
    session.commit()
    return result


@router.post("/get_run_status")
def get_run_status(body: RecoveryRunRequest, auth: RecoveryAuth, session: SessionDep) -> RunStatusView:
    return runs_svc.status_view(_run(session, auth))


@router.post("/get_run_events")
def get_run_events(body: RunEventsRequest, auth: RecoveryAuth, session: SessionDep) -> RunEventsResponse:
    return RunEventsResponse(events=events_svc.list_events(session, auth.run_id, body.after_id, body.limit))


@router.post("/poll_cancel")
def poll_cancel(body: RecoveryRunRequest, auth: RecoveryAuth, session: SessionDep) -> PollCancelResponse:
    return PollCancelResponse(cancel_requested=_run(session, auth).cancel_requested)


@router.post("/refresh_session")
def refresh_session(body: RecoveryRunRequest, auth: RecoveryAuth) -> RefreshSessionResponse:
    """Checks the token owns ``run_id`` and slides the expiry; returns ``session_expires_at``."""
    return RefreshSessionResponse(session_expires_at=auth.expires_at)
