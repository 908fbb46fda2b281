"""Agent enrollment with a tenant's enrollment token (rate limited per client address)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request

from e3backup.api.agent import EnrollRequest, EnrollResponse
from e3backup.server.deps import SessionDep, StateDep, client_ip
from e3backup.server.routes.auth import too_many
from e3backup.server.security.ratelimit import Attempt
from e3backup.server.services import agents as svc

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/agent", tags=["agent"])


@router.post("/enroll", status_code=201)
def enroll(body: EnrollRequest, request: Request, session: SessionDep, state: StateDep) -> EnrollResponse:
    attempt = state.enroll_limiter.begin(f"enroll:{client_ip(request)}")
    if not isinstance(attempt, Attempt):
        raise too_many(attempt, "failed enrollments")
    result = None
    try:
        result = svc.enroll(session, body, state.clock.now())
    finally:
        attempt.end(failed=result is None)
    if result is None:
        log.warning("enrollment with an unknown, expired or used-up token from %s", client_ip(request))
        raise HTTPException(status_code=401, detail="unknown, expired or used-up enrollment token")
    agent, token = result
    session.commit()
    log.info(
        "agent %s enrolled in tenant %s (host %s, %s)", agent.id, agent.tenant_id, agent.hostname, agent.os
    )
    return EnrollResponse(agent_id=agent.id, tenant_id=agent.tenant_id, agent_token=token)
