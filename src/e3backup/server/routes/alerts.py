"""Alert channels (email, signed webhooks; per tenant) and incidents. Channels are managed by
administrators (a tenant's: their tenant's; MSP staff: any, or MSP-wide); incidents are seen
by anyone of the tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from e3backup.api.common import Id
from e3backup.server.deps import CurrentUser, ManagerUser, SessionDep, StateDep, client_ip
from e3backup.server.schemas import AlertChannelCreate, AlertChannelPublic, AlertIncidentPublic
from e3backup.server.services import alert_channels as svc
from e3backup.server.services import audit

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get("/channels")
def list_channels(session: SessionDep, user: ManagerUser) -> list[AlertChannelPublic]:
    return [AlertChannelPublic.model_validate(c) for c in svc.visible_channels(session, user)]


@router.post("/channels", status_code=201)
def create_channel(
    body: AlertChannelCreate, request: Request, session: SessionDep, state: StateDep, user: ManagerUser
) -> AlertChannelPublic:
    channel = svc.create_channel(session, state.box, user, body, state.clock.now())
    audit.record(session, state.clock.now(), "alert_channel.create", user=user, tenant_id=channel.tenant_id,
                 target_type="alert_channel", target_id=channel.id, ip=client_ip(request),
                 details={"kind": channel.kind, "target": channel.target, "rules": channel.rules})
    session.commit()
    return AlertChannelPublic.model_validate(channel)


@router.delete("/channels/{channel_id}", status_code=204)
def delete_channel(channel_id: Id, request: Request, session: SessionDep, state: StateDep, user: ManagerUser) -> None:
    channel = svc.channel_of(session, user, channel_id)
    audit.record(session, state.clock.now(), "alert_channel.delete", user=user, tenant_id=channel.tenant_id,
                 target_type="alert_channel", target_id=channel.id, ip=client_ip(request),
                 details={"kind": channel.kind, "target": channel.target})
    session.delete(channel)
    session.commit()


@router.get("/incidents")
def list_incidents(
    session: SessionDep, user: CurrentUser, open: bool = False, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[AlertIncidentPublic]:
    return [AlertIncidentPublic.model_validate(i) for i in svc.incidents(session, user, open, limit)]
