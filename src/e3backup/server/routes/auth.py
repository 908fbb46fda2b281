"""Signing in and out: the JSON API (the HTML forms are the dashboard's, in ``server.web``).

Session cookies are HttpOnly and SameSite=Lax (Secure when configured). Unsafe requests need
the session's CSRF token (see ``security.csrf``); the pre-login forms use a double-submit cookie.
Failed sign-ins are rate limited per client address and per (address, account).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request, Response
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
from e3backup.server.errors import FieldError
from e3backup.server.schemas import LoginRequest, LoginResponse, TotpCode, TotpSetup, UserPublic
from e3backup.server.security.ratelimit import Attempt
from e3backup.server.services import audit, totp
from e3backup.server.services import users as svc
from e3backup.server.state import ServerState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/auth", tags=["auth"])


def too_many(wait: float, what: str) -> HTTPException:
    return HTTPException(
        status_code=429, detail=f"too many {what}; try again later", headers={"Retry-After": str(int(wait) + 1)}
    )


def sign_in(
    session: Session, state: ServerState, request: Request, email: str, password: str, totp_code: str | None = None
) -> tuple[UserSession, str]:
    """Check the password, rate limited per client address and per (address, account).

    The budget of an (address, account) pair is ``login_attempts`` failures in the window: an
    attacker's guesses from elsewhere never lock the account's owner out. An address alone gets
    ``login_source_attempts`` (guessing across many accounts). Attempts in flight count, so
    parallel guesses get no more real password checks than sequential ones.
    """
    address, account = client_ip(request), svc.normalize_email(email)
    source, pair = f"ip:{address}", f"ip:{address}|email:{account}"
    attempt = state.login_limiter.begin(
        source, pair, limits={source: state.settings.login_source_attempts}
    )
    if not isinstance(attempt, Attempt):
        raise too_many(attempt, "failed sign-ins")
    user = None
    second_factor = ""
    try:
        user = svc.authenticate(session, state.passwords, email, password)
        if user is not None and user.totp_enabled and not totp.check(state.box, user, totp_code):
            second_factor = "missing" if not totp_code else "wrong"
            user = None  # a missing or wrong code is a failed sign-in (rate limited the same)
    finally:
        attempt.end(failed=user is None, forget=(pair,) if user is not None else ())
    if user is None:
        log.warning("failed sign-in for %s from %s", account, address)
        audit.record(session, state.clock.now(), "auth.login_failed", actor=account, ip=address,
                     details={"second_factor": second_factor} if second_factor else None)
        session.commit()
        if second_factor:
            word = "required" if second_factor == "missing" else "wrong"
            raise HTTPException(status_code=401, detail=f"two-factor code {word}")
        raise HTTPException(status_code=401, detail="wrong email or password")
    row, token = svc.start_session(session, user, state.clock.now(), state.settings.session_hours)
    audit.record(session, state.clock.now(), "auth.login", user=user, ip=address)
    session.commit()
    log.info("user %s signed in", user.id)
    return row, token


def set_session_cookie(response: Response, state: ServerState, token: str) -> None:
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
    row, token = sign_in(session, state, request, body.email, body.password, body.totp_code)
    set_session_cookie(response, state, token)
    return LoginResponse(user=svc.user_public(row.user), csrf_token=row.csrf_token, expires_at=row.expires_at)


@router.post("/logout", status_code=204)
def logout(
    user_session: CurrentUserSession, session: SessionDep, state: StateDep, request: Request, response: Response
) -> None:
    audit.record(session, state.clock.now(), "auth.logout", user=user_session.user, ip=client_ip(request))
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


@router.post("/totp/setup")
def totp_setup(user: CurrentUser, session: SessionDep, state: StateDep) -> TotpSetup:
    """A new second-factor secret for the signed-in user, shown once; in force after ``enable``."""
    secret, uri = totp.begin_setup(state.box, user)
    session.commit()
    return TotpSetup(secret=secret, otpauth_uri=uri)


@router.post("/totp/enable", status_code=204)
def totp_enable(body: TotpCode, request: Request, user: CurrentUser, session: SessionDep, state: StateDep) -> None:
    totp.enable(state.box, user, body.code)
    audit.record(session, state.clock.now(), "auth.totp_enable", user=user, ip=client_ip(request))
    session.commit()


@router.post("/totp/disable", status_code=204)
def totp_disable(body: TotpCode, request: Request, user: CurrentUser, session: SessionDep, state: StateDep) -> None:
    """Turning it off takes a current code (a stolen session alone cannot)."""
    if not totp.check(state.box, user, body.code):
        raise FieldError("code", "wrong code")
    totp.disable(user)
    audit.record(session, state.clock.now(), "auth.totp_disable", user=user, ip=client_ip(request))
    session.commit()


@router.get("/whoami")
def whoami(user: CurrentUser) -> UserPublic:
    return svc.user_public(user)


__all__ = ["router", "set_session_cookie", "sign_in"]
