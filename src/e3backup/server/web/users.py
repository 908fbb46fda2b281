"""Users in the dashboard: the administrators' user list (invite, disable, reset the password
or the second factor, change the role) and everyone's own account page (two-factor set-up).
Every form goes through the users and auth API handlers: the same rules and audit entries."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from e3backup.api.common import Id
from e3backup.server.db.models import User
from e3backup.server.deps import SessionDep, StateDep
from e3backup.server.problems import FieldError
from e3backup.server.routes import auth as auth_api
from e3backup.server.routes import users as users_api
from e3backup.server.schemas import TotpCode, UserCreate, UserUpdate
from e3backup.server.security.roles import DESCRIPTIONS, TENANT_ROLES
from e3backup.server.services import totp
from e3backup.server.web.deps import FormSession, PageDep, PageUsers

router = APIRouter(include_in_schema=False)


def _users_page(page: PageDep, session: SessionDep, error: str = "", status: int = 200) -> HTMLResponse:
    query = select(User).order_by(User.email)
    if not page.user.is_admin:
        query = query.where(User.tenant_id == page.user.tenant_id)
    elif page.scope.tenant is not None:
        query = query.where(User.tenant_id == page.scope.tenant.id)
    return page.render("users.html", status_code=status, active="users", users=list(session.scalars(query)),
                       roles=[(r.value, DESCRIPTIONS[r]) for r in TENANT_ROLES], error=error,
                       tenants={t.id: t.name for t in page.scope.tenants})


@router.get("/users", response_class=HTMLResponse)
def users_page(page: PageDep, _can: PageUsers, session: SessionDep) -> HTMLResponse:
    return _users_page(page, session)


@router.post("/users", response_model=None)
def invite_user(
    page: PageDep, can: PageUsers, _form: FormSession, request: Request, session: SessionDep, state: StateDep,
    email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "",
) -> Response:
    """A new user of the tenant in view with a first password the administrator passes on."""
    tenant = page.scope.tenant.id if page.scope.tenant else page.user.tenant_id
    try:
        body = UserCreate.model_validate({"email": email, "password": password, "role": role or "read_only",
                                          "tenant_id": tenant})
        users_api.create_user(body, session, state, can.user)
    except (ValidationError, FieldError) as e:
        session.rollback()
        message = e.message if isinstance(e, FieldError) else "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        return _users_page(page, session, f"Not added: {message}", status=422)
    return RedirectResponse("/users", status_code=303)


@router.post("/users/{user_id}", response_model=None)
def change_user(
    user_id: Id, page: PageDep, can: PageUsers, _form: FormSession, session: SessionDep, state: StateDep,
    action: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "",
) -> Response:
    actions: dict[str, dict[str, object]] = {
        "disable": {"disabled": True}, "enable": {"disabled": False}, "reset_totp": {"reset_totp": True},
        "password": {"password": password}, "role": {"role": role},
    }
    changes = actions.get(action, {})
    if not changes:
        raise HTTPException(status_code=422, detail=f"unknown action {action!r}")
    try:
        users_api.update_user(user_id, UserUpdate.model_validate(changes), session, state, can.user)
    except (ValidationError, FieldError, HTTPException) as e:
        session.rollback()
        if isinstance(e, HTTPException) and e.status_code == 404:
            raise
        message = e.message if isinstance(e, FieldError) else str(getattr(e, "detail", e))
        return _users_page(page, session, f"Not changed: {message}", status=422)
    return RedirectResponse("/users", status_code=303)


@router.get("/account", response_class=HTMLResponse)
def account_page(page: PageDep) -> HTMLResponse:
    return page.render("account.html", active="account", setup=None, error="")


@router.post("/account/totp", response_model=None)
def account_totp(
    page: PageDep, user_session: FormSession, request: Request, session: SessionDep, state: StateDep,
    action: Annotated[str, Form()] = "", code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """``setup`` shows a new secret once; ``enable`` and ``disable`` take a current code."""
    user = session.get(User, user_session.user.id)
    assert user is not None
    if action == "setup":
        secret, uri = totp.begin_setup(state.box, user)
        session.commit()
        return page.render("account.html", active="account", setup={"secret": secret, "uri": uri}, error="")
    try:
        body = TotpCode.model_validate({"code": code})
        if action == "enable":
            auth_api.totp_enable(body, request, user, session, state)
        elif action == "disable":
            auth_api.totp_disable(body, request, user, session, state)
        else:
            raise HTTPException(status_code=422, detail=f"unknown action {action!r}")
    except (ValidationError, FieldError):
        session.rollback()
        return page.render("account.html", status_code=422, active="account", setup=None,
                           error="Wrong code: type the current 6 digits of your authenticator app.")
    return RedirectResponse("/account", status_code=303)


__all__ = ["router"]
