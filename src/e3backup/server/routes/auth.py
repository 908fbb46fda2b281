"""Signing in and out: the JSON API and minimal HTML forms (login, first-admin set-up).

Session cookies are HttpOnly and SameSite=Lax (Secure when configured). Unsafe requests need
the session's CSRF token (see ``security.csrf``); the pre-login forms use a double-submit cookie.
Failed sign-ins are rate limited per client address and per email.
"""

from __future__ import annotations

import html
import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from e3backup.server.db.models import UserSession
from e3backup.server.deps import (
    SESSION_COOKIE,
    CurrentUser,
    CurrentUserSession,
    SessionDep,
    StateDep,
    client_ip,
)
from e3backup.server.problems import FieldError
from e3backup.server.schemas import LoginRequest, LoginResponse, UserPublic
from e3backup.server.security import csrf
from e3backup.server.security.tokens import hash_token
from e3backup.server.services import users as svc
from e3backup.server.state import ServerState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/auth", tags=["auth"])
forms = APIRouter(tags=["auth"], include_in_schema=False)


def _rate_limited(state: ServerState, keys: list[str]) -> None:
    waits = [w for k in keys if (w := state.login_limiter.retry_after(k)) is not None]
    if waits:
        raise HTTPException(
            status_code=429,
            detail="too many failed sign-ins; try again later",
            headers={"Retry-After": str(int(max(waits)) + 1)},
        )


def _sign_in(
    session: Session, state: ServerState, request: Request, email: str, password: str
) -> tuple[UserSession, str]:
    keys = [f"ip:{client_ip(request)}", f"email:{svc.normalize_email(email)}"]
    _rate_limited(state, keys)
    user = svc.authenticate(session, state.passwords, email, password)
    if user is None:
        for k in keys:
            state.login_limiter.hit(k)
        log.warning("failed sign-in for %s from %s", svc.normalize_email(email), client_ip(request))
        raise HTTPException(status_code=401, detail="wrong email or password")
    row, token = svc.start_session(session, user, state.clock.now(), state.settings.session_hours)
    session.commit()
    log.info("user %s signed in", user.id)
    return row, token


def _set_session_cookie(response: Response, state: ServerState, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(state.settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=state.settings.cookie_secure,
        path="/",
    )


@router.post("/login")
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep, state: StateDep
) -> LoginResponse:
    row, token = _sign_in(session, state, request, body.email, body.password)
    _set_session_cookie(response, state, token)
    return LoginResponse(user=svc.user_public(row.user), csrf_token=row.csrf_token, expires_at=row.expires_at)


@router.post("/logout", status_code=204)
def logout(user_session: CurrentUserSession, session: SessionDep, response: Response) -> None:
    session.delete(user_session)
    session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/me")
def me(user_session: CurrentUserSession) -> LoginResponse:
    """The signed-in user and the CSRF token to send with unsafe requests."""
    return LoginResponse(
        user=svc.user_public(user_session.user),
        csrf_token=user_session.csrf_token,
        expires_at=user_session.expires_at,
    )


@router.get("/whoami")
def whoami(user: CurrentUser) -> UserPublic:
    return svc.user_public(user)


# --- HTML forms ------------------------------------------------------------------------------

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>e3backup - {title}</title></head>
<body><h1>{title}</h1>{error}<form method="post" action="{action}">
<input type="hidden" name="csrf_token" value="{csrf}">
<label>Email <input name="email" type="email" required></label>
<label>Password <input name="password" type="password" required></label>
<button type="submit">{button}</button></form></body></html>"""


def _form_page(
    request: Request, title: str, action: str, button: str, error: str = "", status: int = 200
) -> HTMLResponse:
    token = request.cookies.get(csrf.PRELOGIN_COOKIE) or secrets.token_urlsafe(32)
    body = _PAGE.format(
        title=title,
        action=action,
        button=button,
        csrf=html.escape(token),
        error=f"<p role=alert>{html.escape(error)}</p>" if error else "",
    )
    response = HTMLResponse(body, status_code=status)
    response.set_cookie(csrf.PRELOGIN_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response


def _check_prelogin_csrf(request: Request, token: str | None) -> None:
    if not csrf.tokens_match(request.cookies.get(csrf.PRELOGIN_COOKIE), token):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token (csrf_token form field)")


@forms.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _form_page(request, "Sign in", "/login", "Sign in")


@forms.post("/login")
def login_form(
    request: Request,
    session: SessionDep,
    state: StateDep,
    email: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    _check_prelogin_csrf(request, csrf_token)
    try:
        _row, token = _sign_in(session, state, request, email, password)
    except HTTPException as e:
        if e.status_code != 401:
            raise
        return _form_page(request, "Sign in", "/login", "Sign in", "Wrong email or password.", status=401)
    response = RedirectResponse("/", status_code=303)
    _set_session_cookie(response, state, token)
    return response


@forms.post("/logout")
def logout_form(
    request: Request, session: SessionDep, state: StateDep, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    row = (
        session.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
        if token
        else None
    )
    if row is not None:
        if not csrf.tokens_match(row.csrf_token, csrf_token):
            raise HTTPException(status_code=403, detail="missing or wrong CSRF token (csrf_token form field)")
        session.delete(row)
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@forms.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, session: SessionDep) -> HTMLResponse:
    """First start: create the first MSP administrator (only while there is no user)."""
    if svc.user_count(session) > 0:
        raise HTTPException(status_code=404, detail="already set up")
    return _form_page(request, "Create the first administrator", "/setup", "Create")


@forms.post("/setup")
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
    if len(password) < 10:
        raise FieldError("password", "at least 10 characters")
    if "@" not in email:
        raise FieldError("email", "not an email address")
    svc.create_user(
        session, state.passwords, state.clock.now(), email, password, is_admin=True, tenant_id=None
    )
    session.commit()
    return RedirectResponse("/login", status_code=303)


__all__ = ["forms", "router"]
