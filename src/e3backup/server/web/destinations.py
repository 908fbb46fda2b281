"""Storage destinations page: the tenant's destinations defined once, with their usage against
the quota, "Test connection", a form to add one and removal (refused while jobs use it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from e3backup.api.common import Id
from e3backup.server.deps import SessionDep, StateDep, client_ip
from e3backup.server.errors import Conflict
from e3backup.server.problems import FieldError
from e3backup.server.schemas import ConnectionVerdict, StorageDestinationCreate
from e3backup.server.services import audit, quotas
from e3backup.server.services import destinations as svc
from e3backup.server.web.deps import FormSession, PageDep, PageManager
from e3backup.server.web.wizard import form_field

router = APIRouter(include_in_schema=False)
SECRETS = ("destination.secret_access_key", "destination.repository_password")
GIB = 1 << 30


def _page(page: PageDep, session: SessionDep, errors: dict[str, str] | None = None,
          form: dict[str, str] | None = None, status: int = 200, verdict: tuple[int, ConnectionVerdict] | None = None,
          notice: str = "") -> HTMLResponse:
    rows = []
    for d in svc.visible(session, page.user, page.scope.tenant_ids):
        rows.append({"dest": d, "where": svc.describe(d), "stored": quotas.destination_stored(session, d),
                     "jobs": svc.users_of(session, d, live_only=True)})
    tenants = {t.id: t for t in page.scope.tenants}
    tenant_quotas = [
        {"tenant": t, "stored": quotas.tenant_stored(session, t.id)}
        for t in page.scope.tenants
        if t.quota_bytes is not None and (page.scope.tenant_ids is None or t.id in page.scope.tenant_ids)
    ]
    return page.render(
        "destinations.html", status_code=status, active="destinations", rows=rows, errors=errors or {},
        form=form or {"destination.type": "s3", "quota_warn_percent": "80"}, verdict=verdict, notice=notice,
        tenants={i: t.name for i, t in tenants.items()}, tenant_quotas=tenant_quotas,
    )


@router.get("/destinations", response_class=HTMLResponse)
def destinations_page(page: PageDep, session: SessionDep, notice: str = "") -> HTMLResponse:
    notices = {"added": "Destination added.", "removed": "Destination removed."}
    return _page(page, session, notice=notices.get(notice, ""))


def _errors(e: ValidationError | FieldError) -> dict[str, str]:
    if isinstance(e, FieldError):
        return {e.field: e.message}
    found: dict[str, str] = {}
    for err in e.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int) and p not in ("s3", "local")]
        name = ".".join(loc)
        found.setdefault(name if name in ("name", "quota_bytes", "quota_warn_percent") else
                         form_field(name) or name, str(err["msg"]))
    return found


def _spec(form: dict[str, str], tenant_id: int | None) -> dict[str, Any]:
    def get(key: str) -> str:
        return form.get(key, "").strip()

    kind = get("destination.type") or "s3"
    dest: dict[str, Any] = {"type": kind, "repository_password": get("destination.repository_password") or None}
    if kind == "local":
        dest["path"] = get("destination.path")
    else:
        dest |= {k: get(f"destination.{k}") for k in ("endpoint", "bucket", "prefix", "region", "access_key_id")}
        dest["secret_access_key"] = get("destination.secret_access_key") or None
    quota = get("quota_gib")
    spec: dict[str, Any] = {"name": get("name"), "destination": dest, "tenant_id": tenant_id,
                            "quota_warn_percent": get("quota_warn_percent") or 80}
    if quota:
        try:
            spec["quota_bytes"] = int(float(quota) * GIB)
        except ValueError:
            spec["quota_bytes"] = quota  # the schema names it
    return spec


@router.post("/destinations", response_model=None)
async def add_destination(page: PageDep, _can: PageManager, _form: FormSession, request: Request,
                          session: SessionDep, state: StateDep) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
    tenant = page.scope.tenant.id if page.scope.tenant else None
    try:
        spec = StorageDestinationCreate.model_validate(_spec(form, tenant if page.user.is_admin else None))
        dest = svc.create(session, state.box, page.user, spec, state.clock.now())
    except (ValidationError, FieldError) as e:
        session.rollback()
        errors = _errors(e)
        if "quota_bytes" in errors:
            errors["quota_gib"] = errors.pop("quota_bytes")
        if "tenant_id" in errors:
            errors[""] = "Choose the tenant in the tenant switcher first: a destination belongs to one tenant."
            del errors["tenant_id"]
        return _page(page, session, errors, {k: v for k, v in form.items() if k not in SECRETS}, status=422)
    audit.record(session, state.clock.now(), "destination.create", user=page.user, tenant_id=dest.tenant_id,
                 target_type="destination", target_id=dest.id, ip=client_ip(request),
                 details={"name": dest.name, "where": svc.describe(dest), "quota_bytes": dest.quota_bytes})
    session.commit()
    return RedirectResponse("/destinations?notice=added", status_code=303)


@router.post("/destinations/{dest_id}/test", response_class=HTMLResponse)
def test_destination(dest_id: Id, page: PageDep, _can: PageManager, _form: FormSession, request: Request,
                     session: SessionDep, state: StateDep) -> HTMLResponse:
    dest = svc.get_visible(session, page.user, dest_id)
    verdict = svc.check_connection(state.box, dest, list(state.settings.browse_local_roots), session=session)
    audit.record(session, state.clock.now(), "destination.test", user=page.user, tenant_id=dest.tenant_id,
                 target_type="destination", target_id=dest.id, ip=client_ip(request),
                 details={"name": dest.name, "code": verdict.code})
    session.commit()
    return _page(page, session, verdict=(dest.id, verdict))


@router.post("/destinations/{dest_id}/delete", response_model=None)
def delete_destination(dest_id: Id, page: PageDep, _can: PageManager, _form: FormSession, request: Request,
                       session: SessionDep, state: StateDep) -> Response:
    dest = svc.get_visible(session, page.user, dest_id)
    details = {"name": dest.name, "where": svc.describe(dest)}
    tenant_id = dest.tenant_id
    try:
        svc.delete(session, dest)
    except Conflict as e:
        session.rollback()
        return _page(page, session, {"": str(e)}, status=409)
    audit.record(session, state.clock.now(), "destination.delete", user=page.user, tenant_id=tenant_id,
                 target_type="destination", target_id=dest_id, ip=client_ip(request), details=details)
    session.commit()
    return RedirectResponse("/destinations?notice=removed", status_code=303)


__all__ = ["router"]
