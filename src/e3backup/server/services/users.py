"""Users, sign-in sessions and tenants."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from e3backup.server.db.models import Tenant, User, UserSession
from e3backup.server.errors import FieldError
from e3backup.server.schemas import TenantPublic, UserPublic
from e3backup.server.security import PasswordHasher
from e3backup.server.security.roles import Role
from e3backup.server.security.tokens import ENROLLMENT, SESSION, hash_token, new_token


def normalize_email(email: str) -> str:
    return email.strip().lower()


def user_count(session: Session) -> int:
    return session.scalar(select(func.count(User.id))) or 0


def create_user(
    session: Session,
    hasher: PasswordHasher,
    now: datetime,
    email: str,
    password: str,
    is_admin: bool,
    tenant_id: int | None,
    role: Role | None = None,
) -> User:
    """MSP staff when ``is_admin`` (or ``role`` msp_admin); else a tenant user, ``admin`` unless
    ``role`` says otherwise (a tenant's first users administer it)."""
    email = normalize_email(email)
    role = Role.MSP_ADMIN if is_admin else (role or Role.ADMIN)
    if role is Role.MSP_ADMIN and tenant_id is not None:
        raise FieldError("tenant_id", "administrators belong to no tenant")
    if role is not Role.MSP_ADMIN:
        if tenant_id is None:
            raise FieldError("tenant_id", "required for tenant users")
        if session.get(Tenant, tenant_id) is None:
            raise FieldError("tenant_id", f"no tenant {tenant_id}")
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise FieldError("email", "a user with this email already exists")
    user = User(
        email=email,
        password_hash=hasher.hash(password),
        role=role.value,
        tenant_id=tenant_id,
        disabled=False,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, hasher: PasswordHasher, email: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    ok = hasher.verify(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        return None
    return user


def start_session(session: Session, user: User, now: datetime, hours: float) -> tuple[UserSession, str]:
    token = new_token(SESSION)
    row = UserSession(
        user_id=user.id,
        token_hash=hash_token(token),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    row.user = user
    return row, token


def live_session(session: Session, token: str | None, now: datetime) -> UserSession | None:
    """The sign-in session of a cookie's token, if it has not expired and its user is enabled.

    The one lookup behind the API, the pages, the live-progress stream and sign-out.
    """
    if not token:
        return None
    return live_session_by_hash(session, hash_token(token), now)


def live_session_by_hash(session: Session, token_hash: str, now: datetime) -> UserSession | None:
    row = session.scalar(select(UserSession).where(UserSession.token_hash == token_hash))
    if row is None or row.expires_at <= now or row.user.disabled:
        return None
    return row


def end_sessions(session: Session, user_id: int) -> None:
    """Sign the user out everywhere (password change, disable)."""
    session.execute(delete(UserSession).where(UserSession.user_id == user_id))


def user_public(user: User) -> UserPublic:
    return UserPublic.model_validate(user)


def create_tenant(session: Session, name: str, now: datetime) -> Tenant:
    name = name.strip()
    if not name:
        raise FieldError("name", "must not be blank")
    if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
        raise FieldError("name", "a tenant with this name already exists")
    tenant = Tenant(name=name, created_at=now)
    session.add(tenant)
    session.flush()
    return tenant


ENROLLMENT_HOURS = 7 * 24


def rotate_enrollment_token(
    tenant: Tenant, now: datetime | None = None, hours: float = ENROLLMENT_HOURS, uses: int | None = None
) -> str:
    """A new enrollment token (the old one stops working), valid for ``hours`` from ``now``
    (default: the wall clock) and, if given, for ``uses`` enrollments."""
    token = new_token(ENROLLMENT)
    tenant.enrollment_token_hash = hash_token(token)
    tenant.enrollment_token_expires_at = (now or datetime.now(UTC)) + timedelta(hours=hours)
    tenant.enrollment_token_uses_left = uses
    return token


def tenant_public(tenant: Tenant, now: datetime | None = None) -> TenantPublic:
    live = enrollment_token_live(tenant, now or datetime.now(UTC))
    return TenantPublic(
        id=tenant.id,
        name=tenant.name,
        has_enrollment_token=live,
        enrollment_token_expires_at=tenant.enrollment_token_expires_at if live else None,
        enrollment_token_uses_left=tenant.enrollment_token_uses_left if live else None,
        created_at=tenant.created_at,
    )


def enrollment_token_live(tenant: Tenant, now: datetime) -> bool:
    expires, uses = tenant.enrollment_token_expires_at, tenant.enrollment_token_uses_left
    return (
        tenant.enrollment_token_hash is not None
        and (expires is None or expires > now)
        and (uses is None or uses > 0)
    )


__all__ = [
    "authenticate",
    "create_tenant",
    "create_user",
    "end_sessions",
    "enrollment_token_live",
    "live_session",
    "live_session_by_hash",
    "normalize_email",
    "rotate_enrollment_token",
    "start_session",
    "tenant_public",
    "user_count",
    "user_public",
]
