"""Agents: enrollment, listing with online state, and their disk reports."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, object_session

from e3backup.api.agent import DiskReport, EnrollRequest
from e3backup.buildinfo import is_older
from e3backup.buildinfo import version as build_version
from e3backup.server.db.models import Agent, RecoverySession, Tenant
from e3backup.server.schemas import AgentDisks, AgentPublic
from e3backup.server.security.tokens import AGENT, gateway_token, hash_token, new_token
from e3backup.server.services.users import enrollment_token_live


def enroll(session: Session, req: EnrollRequest, now: datetime) -> tuple[Agent, str] | None:
    """A new agent of the tenant whose enrollment token this is; None if the token is unknown,
    expired or used up (a use is taken atomically, so parallel enrollments cannot overspend)."""
    tenant = session.scalar(
        select(Tenant).where(Tenant.enrollment_token_hash == hash_token(req.enrollment_token))
    )
    if tenant is None or not enrollment_token_live(tenant, now):
        return None
    if tenant.enrollment_token_uses_left is not None:
        taken = session.execute(
            update(Tenant)
            .where(Tenant.id == tenant.id, Tenant.enrollment_token_uses_left > 0)
            .values(enrollment_token_uses_left=Tenant.enrollment_token_uses_left - 1)
            .execution_options(synchronize_session="fetch")
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None
    token = new_token(AGENT)
    agent = Agent(
        tenant_id=tenant.id,
        hostname=req.hostname,
        os=req.os,
        os_version=req.os_version,
        agent_version=req.agent_version,
        token_hash=hash_token(token),
        gateway_token_hash=hash_token(gateway_token(token)),
        revoked=False,
        created_at=now,
        last_seen_at=None,  # online once the agent process calls in, not at enrollment
        engines=[e.value for e in req.engines] if req.engines is not None else None,
        platform=req.platform or "",
    )
    session.add(agent)
    session.flush()
    return agent, token


def known_bearer(session: Session, token: str, now: datetime) -> bool:
    """Whether ``token`` is a live agent token or recovery session token (for the body limit)."""
    token_hash = hash_token(token)
    if session.scalar(select(Agent.id).where(Agent.token_hash == token_hash, Agent.revoked.is_(False))):
        return True
    expires = session.scalar(select(RecoverySession.expires_at).where(RecoverySession.token_hash == token_hash))
    return expires is not None and expires > now


def agent_public(agent: Agent, now: datetime, offline_after_seconds: float) -> AgentPublic:
    online = (
        not agent.revoked
        and agent.last_seen_at is not None
        and now - agent.last_seen_at <= timedelta(seconds=offline_after_seconds)
    )
    wanted = wanted_version(agent)
    return AgentPublic.model_validate(agent).model_copy(
        update={"online": online, "wanted_version": wanted, "out_of_date": is_older(agent.agent_version, wanted)}
    )


def wanted_version(agent: Agent) -> str:
    """The version this agent should run: its tenant's choice (self-update), else the server's own."""
    session = object_session(agent)
    tenant = session.get(Tenant, agent.tenant_id) if session is not None else None
    return (tenant.agent_version_wanted if tenant is not None else None) or build_version()


def store_disks(agent: Agent, report: DiskReport, now: datetime) -> None:
    agent.disks = report.model_dump(mode="json")
    agent.disks_reported_at = now


def agent_disks(agent: Agent) -> AgentDisks:
    disks = agent.disks or {}
    return AgentDisks(
        agent_id=agent.id,
        reported_at=agent.disks_reported_at,
        disks=disks.get("disks", []),
        volumes=disks.get("volumes", []),
        restore_roots=disks.get("restore_roots", []),
        allowed_devices=disks.get("allowed_devices", []),
        hyperv_vms=disks.get("hyperv_vms"),
        hyperv_error=disks.get("hyperv_error"),
    )


__all__ = ["agent_disks", "agent_public", "enroll", "store_disks"]
