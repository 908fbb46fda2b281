"""Alerts: the channels (email, signed webhooks) of the tenant in view, and its incidents; and
the audit log (who did what)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from e3backup.api.common import Id
from e3backup.server.deps import SessionDep, StateDep, client_ip
from e3backup.server.problems import FieldError
from e3backup.server.schemas import ALL_RULES, AlertChannelCreate
from e3backup.server.services import alert_channels as svc
from e3backup.server.services import alerts as alerts_svc
from e3backup.server.services import audit
from e3backup.server.services import usage as usage_svc
from e3backup.server.web.deps import FormSession, PageDep, PageManager, PageUsers

router = APIRouter(include_in_schema=False)
AUDIT_PAGE = 50


def _alerts_page(page: PageDep, session: SessionDep, errors: dict[str, str] | None = None,
                 form: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    tenant_ids = page.scope.tenant_ids
    channels = [c for c in svc.visible_channels(session, page.user)
                if tenant_ids is None or c.tenant_id in tenant_ids or c.tenant_id is None]
    incidents = [i for i in svc.incidents(session, page.user) if tenant_ids is None or i.tenant_id in tenant_ids]
    return page.render(
        "alerts.html", status_code=status, active="alerts", channels=channels, incidents=incidents,
        rules=alerts_svc.RULES, errors=errors or {}, form=form or {"kind": "email", "summary": "none"},
        tenants={t.id: t.name for t in page.scope.tenants},
    )


def _errors(e: ValidationError | FieldError) -> dict[str, str]:
    """Errors by input name (``target``, ``secret``, ``rules``...)."""
    if isinstance(e, FieldError):
        return {e.field: e.message}
    return {str(err["loc"][0]) if err["loc"] else "": str(err["msg"]) for err in e.errors()}


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(page: PageDep, session: SessionDep) -> HTMLResponse:
    return _alerts_page(page, session)


@router.post("/alerts/channels", response_model=None)
async def add_channel(page: PageDep, _can: PageManager, _form: FormSession, request: Request,
                      session: SessionDep, state: StateDep) -> Response:
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items() if k not in ("csrf_token", "rules")}
    rules = [str(r) for r in raw.getlist("rules")] or list(ALL_RULES)
    tenant = page.scope.tenant.id if page.scope.tenant else None
    try:
        spec = AlertChannelCreate.model_validate({
            "kind": form.get("kind", "email"), "target": form.get("target", ""), "rules": rules,
            "summary": form.get("summary", "none"), "secret": form.get("secret") or None,
            "tenant_id": tenant if page.user.is_admin else None,
        })
        channel = svc.create_channel(session, state.box, page.user, spec, state.clock.now())
    except (ValidationError, FieldError) as e:
        session.rollback()
        form.pop("secret", None)  # never sent back
        return _alerts_page(page, session, _errors(e), form, status=422)
    audit.record(session, state.clock.now(), "alert_channel.create", user=page.user, tenant_id=channel.tenant_id,
                 target_type="alert_channel", target_id=channel.id, ip=client_ip(request),
                 details={"kind": channel.kind, "target": channel.target, "rules": channel.rules})
    session.commit()
    return RedirectResponse("/alerts", status_code=303)


@router.post("/alerts/channels/{channel_id}/delete", response_model=None)
def delete_channel(channel_id: Id, page: PageDep, _can: PageManager, _form: FormSession, request: Request,
                   session: SessionDep, state: StateDep) -> Response:
    channel = svc.channel_of(session, page.user, channel_id)
    audit.record(session, state.clock.now(), "alert_channel.delete", user=page.user, tenant_id=channel.tenant_id,
                 target_type="alert_channel", target_id=channel.id, ip=client_ip(request),
                 details={"kind": channel.kind, "target": channel.target})
    session.delete(channel)
    session.commit()
    return RedirectResponse("/alerts", status_code=303)


@router.get("/usage", response_class=HTMLResponse)
def usage_page(page: PageDep, _can: PageManager, session: SessionDep, state: StateDep) -> HTMLResponse:
    """Stored (deduplicated, from each repository's index) and protected bytes per repository."""
    rows = usage_svc.report(session, state.box, list(state.settings.browse_local_roots), page.scope.tenant_ids)
    return page.render("usage.html", active="usage", rows=rows)


@router.get("/usage.csv")
def usage_csv(page: PageDep, _can: PageManager, session: SessionDep, state: StateDep) -> Response:
    rows = usage_svc.report(session, state.box, list(state.settings.browse_local_roots), page.scope.tenant_ids)
    return Response(usage_svc.to_csv(rows), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="e3backup-usage.csv"'})


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    page: PageDep,
    _can: PageUsers,
    session: SessionDep,
    action: str = "",
    since: Annotated[str, Query(max_length=40)] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """Who did what, newest first, 50 a page; filter by action (prefix with a dot: ``job.``)."""
    tenant = page.scope.tenant.id if page.scope.tenant else None
    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            when = None
    rows, total = audit.entries(session, page.user, audit.AuditFilter(tenant, action[:64] or None, None, when),
                                max(offset, 0), AUDIT_PAGE)
    return page.render("audit.html", active="audit", rows=rows, total=total, offset=max(offset, 0),
                       page_size=AUDIT_PAGE, action=action, since=since)


__all__ = ["router"]
