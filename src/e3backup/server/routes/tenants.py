"""Tenants (the MSP's customers) and their enrollment tokens."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from e3backup.server.db.models import Tenant
from e3backup.server.deps import AdminUser, CurrentUser, SessionDep, StateDep, VisibleTenant
from e3backup.server.schemas import EnrollmentTokenPublic, TenantCreate, TenantPublic
from e3backup.server.services import users as svc

router = APIRouter(prefix="/api/tenants", tags=["tenants"])


@router.get("")
def list_tenants(session: SessionDep, user: CurrentUser) -> list[TenantPublic]:
    """Admins see every tenant (the dashboard's tenant switcher); tenant users their own."""
    query = select(Tenant).order_by(Tenant.name)
    if not user.is_admin:
        query = query.where(Tenant.id == user.tenant_id)
    return [svc.tenant_public(t) for t in session.scalars(query)]


@router.post("", status_code=201)
def create_tenant(
    body: TenantCreate, session: SessionDep, state: StateDep, _admin: AdminUser
) -> TenantPublic:
    tenant = svc.create_tenant(session, body.name, state.clock.now())
    session.commit()
    return svc.tenant_public(tenant)


@router.get("/{tenant_id}")
def get_tenant(tenant: VisibleTenant) -> TenantPublic:
    return svc.tenant_public(tenant)


@router.post("/{tenant_id}/enrollment-token", status_code=201)
def rotate_enrollment_token(tenant: VisibleTenant, session: SessionDep) -> EnrollmentTokenPublic:
    """A new enrollment token for agents of this tenant (the old one stops working)."""
    token = svc.rotate_enrollment_token(tenant)
    session.commit()
    return EnrollmentTokenPublic(tenant_id=tenant.id, enrollment_token=token)
