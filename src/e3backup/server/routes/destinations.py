"""Storage destinations defined once per tenant (``services.destinations``), their "test
connection", and storage quotas (per destination here, per tenant for MSP staff). Secrets go in,
never out; every change and test is in the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from e3backup.api.common import Id
from e3backup.server.db.models import StorageDestination
from e3backup.server.deps import AdminUser, CurrentUser, ManagerUser, SessionDep, StateDep, VisibleTenant, client_ip
from e3backup.server.schemas import (
    ConnectionVerdict,
    StorageDestinationCreate,
    StorageDestinationPublic,
    StorageDestinationUpdate,
    TenantQuota,
    TenantQuotaPublic,
)
from e3backup.server.services import audit, quotas
from e3backup.server.services import destinations as svc

router = APIRouter(prefix="/api/destinations", tags=["destinations"])
tenant_router = APIRouter(prefix="/api/tenants", tags=["tenants"])


def visible_destination(destination_id: Id, session: SessionDep, user: CurrentUser) -> StorageDestination:
    """Another tenant's destination is 404, like one that does not exist (before any role check)."""
    return svc.get_visible(session, user, destination_id)


VisibleDestination = Annotated[StorageDestination, Depends(visible_destination)]


def _public(session: SessionDep, dest: StorageDestination) -> StorageDestinationPublic:
    return svc.public(dest, quotas.destination_stored(session, dest), [j.id for j in svc.users_of(session, dest, True)])


@router.get("")
def list_destinations(session: SessionDep, user: CurrentUser) -> list[StorageDestinationPublic]:
    return [_public(session, d) for d in svc.visible(session, user)]


@router.get("/{destination_id}")
def get_destination(dest: VisibleDestination, session: SessionDep) -> StorageDestinationPublic:
    return _public(session, dest)


@router.post("", status_code=201)
def create_destination(
    body: StorageDestinationCreate, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> StorageDestinationPublic:
    dest = svc.create(session, state.box, user, body, state.clock.now())
    audit.record(session, state.clock.now(), "destination.create", user=user, tenant_id=dest.tenant_id,
                 target_type="destination", target_id=dest.id, ip=client_ip(request),
                 details={"name": dest.name, "where": svc.describe(dest), "quota_bytes": dest.quota_bytes})
    session.commit()
    return _public(session, dest)


@router.patch("/{destination_id}")
def update_destination(
    dest: VisibleDestination, body: StorageDestinationUpdate, request: Request, session: SessionDep, state: StateDep,
    user: ManagerUser,
) -> StorageDestinationPublic:
    jobs = svc.update(session, state.box, dest, body, state.clock.now())
    audit.record(session, state.clock.now(), "destination.update", user=user, tenant_id=dest.tenant_id,
                 target_type="destination", target_id=dest.id, ip=client_ip(request),
                 details={"name": dest.name, "where": svc.describe(dest), "quota_bytes": dest.quota_bytes,
                          "secrets_changed": body.destination is not None, "jobs": [j.id for j in jobs]})
    session.commit()
    return _public(session, dest)


@router.delete("/{destination_id}", status_code=204)
def delete_destination(
    dest: VisibleDestination, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> None:
    audit.record(session, state.clock.now(), "destination.delete", user=user, tenant_id=dest.tenant_id,
                 target_type="destination", target_id=dest.id, ip=client_ip(request),
                 details={"name": dest.name, "where": svc.describe(dest)})
    svc.delete(session, dest)
    session.commit()


@router.post("/{destination_id}/test")
def test_destination(
    dest: VisibleDestination, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> ConnectionVerdict:
    verdict = svc.check_connection(state.box, dest, list(state.settings.browse_local_roots), session=session)
    audit.record(session, state.clock.now(), "destination.test", user=user, tenant_id=dest.tenant_id,
                 target_type="destination", target_id=dest.id, ip=client_ip(request),
                 details={"name": dest.name, "code": verdict.code})
    session.commit()
    return verdict


@tenant_router.get("/{tenant_id}/quota")
def get_tenant_quota(tenant: VisibleTenant, session: SessionDep) -> TenantQuotaPublic:
    return TenantQuotaPublic(tenant_id=tenant.id, quota_bytes=tenant.quota_bytes,
                             stored_bytes=quotas.tenant_stored(session, tenant.id))


@tenant_router.put("/{tenant_id}/quota")
def set_tenant_quota(
    body: TenantQuota, tenant: VisibleTenant, request: Request, session: SessionDep, state: StateDep, user: AdminUser
) -> TenantQuotaPublic:
    """MSP staff only: what a customer may store in all."""
    tenant.quota_bytes = body.quota_bytes
    audit.record(session, state.clock.now(), "tenant.quota", user=user, tenant_id=tenant.id, target_type="tenant",
                 target_id=tenant.id, ip=client_ip(request), details={"quota_bytes": body.quota_bytes})
    session.commit()
    return get_tenant_quota(tenant, session)
