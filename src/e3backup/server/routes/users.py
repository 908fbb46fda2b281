"""Users: MSP staff manage everyone; a tenant's administrators manage their tenant's users.

A tenant administrator sees and changes only users of their own tenant (others answer 404) and
gives only tenant roles (admin, operator, read_only); MSP staff are made by MSP staff.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from e3backup.api.common import Id
from e3backup.server.db.models import User
from e3backup.server.deps import SessionDep, StateDep, UsersAdmin
from e3backup.server.problems import FieldError
from e3backup.server.schemas import UserCreate, UserPublic, UserUpdate
from e3backup.server.security.roles import Role
from e3backup.server.services import audit, totp
from e3backup.server.services import recovery as recovery_svc
from e3backup.server.services import users as svc

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("")
def list_users(session: SessionDep, user: UsersAdmin, tenant_id: Id | None = None) -> list[UserPublic]:
    query = select(User).order_by(User.email)
    if not user.is_admin:
        query = query.where(User.tenant_id == user.tenant_id)
    elif tenant_id is not None:
        query = query.where(User.tenant_id == tenant_id)
    return [svc.user_public(u) for u in session.scalars(query)]


@router.post("", status_code=201)
def create_user(body: UserCreate, session: SessionDep, state: StateDep, actor: UsersAdmin) -> UserPublic:
    role = Role.MSP_ADMIN if body.is_admin else body.role
    tenant_id = body.tenant_id
    if not actor.is_admin:
        if role is Role.MSP_ADMIN:
            raise FieldError("role", "only MSP staff create MSP staff")
        if tenant_id is not None and tenant_id != actor.tenant_id:
            raise FieldError("tenant_id", "you manage the users of your own tenant only")
        tenant_id = actor.tenant_id
    user = svc.create_user(
        session,
        state.passwords,
        state.clock.now(),
        body.email,
        body.password,
        role is Role.MSP_ADMIN,
        tenant_id,
        role,
    )
    audit.record(session, state.clock.now(), "user.create", user=actor, tenant_id=user.tenant_id,
                 target_type="user", target_id=user.id, details={"email": user.email, "role": user.role})
    session.commit()
    return svc.user_public(user)


@router.patch("/{user_id}")
def update_user(
    user_id: Id, body: UserUpdate, session: SessionDep, state: StateDep, actor: UsersAdmin
) -> UserPublic:
    user = session.get(User, user_id)
    if user is None or not (actor.is_admin or user.tenant_id == actor.tenant_id):
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    if body.role is not None:
        if user.is_admin or body.role is Role.MSP_ADMIN:
            raise FieldError("role", "MSP staff and tenant users are separate: make a new user instead")
        if user.id == actor.id:
            raise FieldError("role", "you cannot change your own role")
        user.role = body.role.value
    if body.disabled is not None:
        if user.id == actor.id and body.disabled:
            raise HTTPException(status_code=409, detail="you cannot disable yourself")
        user.disabled = body.disabled
        if body.disabled:
            svc.end_sessions(session, user.id)  # a re-enabled user signs in again
            recovery_svc.end_sessions_of(session, user.id)  # and their recovery consoles stop
    if body.password is not None:
        user.password_hash = state.passwords.hash(body.password)
        svc.end_sessions(session, user.id)
    if body.reset_totp:
        totp.disable(user)
    changes = body.model_dump(mode="json", exclude_unset=True)
    if "password" in changes:
        changes["password"] = "changed"
    audit.record(session, state.clock.now(), "user.update", user=actor, tenant_id=user.tenant_id,
                 target_type="user", target_id=user.id, details={"email": user.email, **changes})
    session.commit()
    return svc.user_public(user)
