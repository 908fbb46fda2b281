"""Sign-in, sign-out and first-admin set-up pages (HTML forms over the API's session logic).

Before sign-in there is no session to hold a CSRF token, so these forms use a double-submit
token: a random value in the ``e3_csrf`` cookie that the form repeats. After sign-in the browser
returns to the page it asked for (``next``, local paths only).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from e3backup.server.deps import SESSION_COOKIE, SessionDep, StateDep, client_ip
from e3backup.server.routes.auth import set_session_cookie, sign_in
from e3backup.server.security import csrf
from e3backup.server.services import audit
from e3backup.server.services import users as svc
from e3backup.server.web.deps import TENANT_COOKIE
from e3backup.server.web.templating import render

router = APIRouter(include_in_schema=False)


def safe_next(url: str | None) -> str:
    """Only a path on this server (never ``//host`` or a scheme): no open redirect."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/"


def _form(request: Request, template: str, status_code: int = 200, error: str = "", **context: object) -> HTMLResponse:
    token = request.cookies.get(csrf.PRELOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = render(request, template, status_code=status_code, csrf_token=token, error=error, **context)
    response.set_cookie(csrf.PRELOGIN_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


def _check_prelogin_csrf(request: Request, token: str | None) -> None:
    if not csrf.tokens_match(request.cookies.get(csrf.PRELOGIN_COOKIE), token):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token (csrf_token form field)")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: SessionDep, next: str = "/") -> HTMLResponse:
    return _form(request, "login.html", next=safe_next(next), email="", first_run=svc.user_count(session) == 0)


@router.post("/login")
def login_form(
    request: Request,
    session: SessionDep,
    state: StateDep,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str, Form()] = "/",
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    _check_prelogin_csrf(request, csrf_token)
    try:
        _row, token = sign_in(session, state, request, email, password, totp_code or None)
    except HTTPException as e:
        if e.status_code == 401 and str(e.detail).startswith("two-factor"):
            message = ("Type the 6-digit code of your authenticator app." if "required" in str(e.detail)
                       else "Wrong authentication code.")
        elif e.status_code == 401:
            message = "Wrong email or password."
        elif e.status_code == 429:
            message = "Too many failed sign-ins. Wait a few minutes, then try again."
        else:
            raise
        return _form(request, "login.html", e.status_code, message, next=safe_next(next), email=email, first_run=False)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, state, token)
    return response


@router.post("/logout")
def logout_form(
    request: Request, session: SessionDep, state: StateDep, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    row = svc.live_session(session, request.cookies.get(SESSION_COOKIE), state.clock.now())
    if row is not None:
        if not csrf.tokens_match(row.csrf_token, csrf_token):
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token (csrf_token form field)")
        audit.record(session, state.clock.now(), "auth.logout", user=row.user, ip=client_ip(request))
        session.delete(row)
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(TENANT_COOKIE, path="/")
    return response


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, session: SessionDep) -> HTMLResponse:
    """First start: create the first MSP administrator (only while there is no user)."""
    if svc.user_count(session) > 0:
        raise HTTPException(status_code=404, detail="already set up")
    return _form(request, "setup.html", email="", errors={})


@router.post("/setup")
def setup_form(
    request: Request,
    session: SessionDep,
    state: StateDep,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    _check_prelogin_csrf(request, csrf_token)
    if svc.user_count(session) > 0:
        raise HTTPException(status_code=404, detail="already set up")
    errors = {}
    if "@" not in email:
        errors["email"] = "Not an email address."
    if len(password) < 10:
        errors["password"] = "At least 10 characters."
    if errors:
        return _form(request, "setup.html", 422, email=email, errors=errors)
    user = svc.create_user(
        session, state.passwords, state.clock.now(), email, password, is_admin=True, tenant_id=None
    )
    audit.record(session, state.clock.now(), "user.create", user=user, target_type="user", target_id=user.id,
                 ip=client_ip(request), details={"role": user.role, "first_admin": True})
    session.commit()
    return RedirectResponse("/login", status_code=303)


__all__ = ["router", "safe_next"]
