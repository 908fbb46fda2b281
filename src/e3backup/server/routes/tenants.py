"""Tenants (the MSP's customers) and their enrollment tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from e3backup.server.db.models import Tenant
from e3backup.server.deps import (
    AdminUser,
    CurrentUser,
    ManagerUser,
    SessionDep,
    StateDep,
    VisibleTenant,
    client_ip,
)
from e3backup.server.schemas import (
    AgentReleasePublic,
    AgentVersionPublic,
    AgentVersionSet,
    EnrollmentTokenCreate,
    EnrollmentTokenPublic,
    TenantCreate,
    TenantPublic,
)
from e3backup.server.services import agent_releases, audit
from e3backup.server.services import users as svc

router = APIRouter(prefix="/api/tenants", tags=["tenants"])


@router.get("")
def list_tenants(session: SessionDep, state: StateDep, user: CurrentUser) -> list[TenantPublic]:
    """Admins see every tenant (the dashboard's tenant switcher); tenant users their own."""
    query = select(Tenant).order_by(Tenant.name)
    if not user.is_admin:
        query = query.where(Tenant.id == user.tenant_id)
    now = state.clock.now()
    return [svc.tenant_public(t, now) for t in session.scalars(query)]


@router.post("", status_code=201)
def create_tenant(
    body: TenantCreate, session: SessionDep, state: StateDep, _admin: AdminUser
) -> TenantPublic:
    tenant = svc.create_tenant(session, body.name, state.clock.now())
    session.commit()
    return svc.tenant_public(tenant, state.clock.now())


@router.get("/{tenant_id}")
def get_tenant(tenant: VisibleTenant, state: StateDep) -> TenantPublic:
    return svc.tenant_public(tenant, state.clock.now())


@router.post("/{tenant_id}/enrollment-token", status_code=201)
def rotate_enrollment_token(
    tenant: VisibleTenant,
    session: SessionDep,
    state: StateDep,
    _user: ManagerUser,
    body: EnrollmentTokenCreate | None = None,
) -> EnrollmentTokenPublic:
    """A new enrollment token for agents of this tenant (the old one stops working): it expires
    (default 7 days) and may be limited to a number of enrollments."""
    body = body or EnrollmentTokenCreate.model_validate({})
    token = svc.rotate_enrollment_token(tenant, state.clock.now(), body.expires_in_hours, body.max_uses)
    session.commit()
    assert tenant.enrollment_token_expires_at is not None
    return EnrollmentTokenPublic(
        tenant_id=tenant.id,
        enrollment_token=token,
        expires_at=tenant.enrollment_token_expires_at,
        uses_left=tenant.enrollment_token_uses_left,
    )


def _agent_version(session: SessionDep, tenant: Tenant) -> AgentVersionPublic:
    return AgentVersionPublic(tenant_id=tenant.id, wanted_version=tenant.agent_version_wanted,
                              releases=[AgentReleasePublic.model_validate(r) for r in agent_releases.releases(session)])


@router.get("/{tenant_id}/agent-version")
def get_agent_version(tenant: VisibleTenant, session: SessionDep, _admin: AdminUser) -> AgentVersionPublic:
    """The agent version this tenant's agents are offered, and the stored releases (MSP admins)."""
    return _agent_version(session, tenant)


@router.put("/{tenant_id}/agent-version")
def set_agent_version(
    body: AgentVersionSet, tenant: VisibleTenant, session: SessionDep, state: StateDep, admin: AdminUser,
    request: Request,
) -> AgentVersionPublic:
    """Offer a stored release to this tenant's agents (they update between runs), or none (null).
    MSP admins only: the file runs on every machine of the tenant."""
    before = tenant.agent_version_wanted
    agent_releases.choose_version(session, tenant, body.version)
    audit.record(session, state.clock.now(), "tenant.agent_version", user=admin, tenant_id=tenant.id,
                 target_type="tenant", target_id=tenant.id, ip=client_ip(request),
                 details={"from": before, "to": tenant.agent_version_wanted})
    session.commit()
    return _agent_version(session, tenant)
