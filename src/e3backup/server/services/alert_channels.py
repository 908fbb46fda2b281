"""Alert channels: validated, the webhook secret sealed, scoped to who manages them."""

from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from e3backup.server.db.models import AlertChannel, AlertIncident, User
from e3backup.server.errors import FieldError, NotFound
from e3backup.server.schemas import AlertChannelCreate
from e3backup.server.security import SecretBox
from e3backup.server.services.alert_delivery import next_summary, webhook_secret_aad

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def create_channel(
    session: Session, box: SecretBox, user: User, spec: AlertChannelCreate, now: datetime
) -> AlertChannel:
    tenant_id = spec.tenant_id if user.is_admin else user.tenant_id
    if not user.is_admin and spec.tenant_id not in (None, user.tenant_id):
        raise FieldError("tenant_id", "you manage the alerts of your own tenant only")
    target = spec.target.strip()
    if spec.kind == "email":
        if not _EMAIL.match(target):
            raise FieldError("target", f"not an email address: {target!r}")
        if spec.secret:
            raise FieldError("secret", "only for webhooks")
    else:
        url = urlsplit(target)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise FieldError("target", "a webhook needs an http(s) URL")
        if not spec.secret:
            raise FieldError("secret", "required for webhooks (at least 16 characters): receivers check the signature")
    channel = AlertChannel(
        tenant_id=tenant_id, kind=spec.kind, target=target, rules=list(spec.rules), summary=spec.summary,
        next_summary_at=next_summary(spec.summary, now), enabled=True, created_at=now,
    )
    session.add(channel)
    session.flush()
    if spec.secret:
        channel.secret_sealed = box.seal({"secret": spec.secret}, webhook_secret_aad(channel.id))
    return channel


def visible_channels(session: Session, user: User) -> list[AlertChannel]:
    query = select(AlertChannel).order_by(AlertChannel.id)
    if not user.is_admin:
        query = query.where(AlertChannel.tenant_id == user.tenant_id)
    return list(session.scalars(query))


def channel_of(session: Session, user: User, channel_id: int) -> AlertChannel:
    channel = session.get(AlertChannel, channel_id)
    if channel is None or not (user.is_admin or channel.tenant_id == user.tenant_id):
        raise NotFound(f"alert channel {channel_id} not found")
    return channel


def incidents(session: Session, user: User, only_open: bool = False, limit: int = 200) -> list[AlertIncident]:
    query = select(AlertIncident)
    if not user.is_admin:
        query = query.where(AlertIncident.tenant_id == user.tenant_id)
    if only_open:
        query = query.where(AlertIncident.cleared_at.is_(None))
    query = query.order_by(AlertIncident.cleared_at.is_not(None), AlertIncident.id.desc()).limit(limit)
    return list(session.scalars(query))


__all__ = ["channel_of", "create_channel", "incidents", "visible_channels"]
