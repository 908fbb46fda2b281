"""Users: MSP admins manage everyone; tenant users see the users of their tenant."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import select

from e3backup.api.common import Id
from e3backup.server.db.models import User
from e3backup.server.deps import AdminUser, CurrentUser, SessionDep, StateDep
from e3backup.server.schemas import UserCreate, UserPublic, UserUpdate
from e3backup.server.services import users as svc

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("")
def list_users(session: SessionDep, user: CurrentUser, tenant_id: Id | None = None) -> list[UserPublic]:
    query = select(User).order_by(User.email)
    if not user.is_admin:
        query = query.where(User.tenant_id == user.tenant_id)
    elif tenant_id is not None:
        query = query.where(User.tenant_id == tenant_id)
    return [svc.user_public(u) for u in session.scalars(query)]


@router.post("", status_code=201)
def create_user(body: UserCreate, session: SessionDep, state: StateDep, _admin: AdminUser) -> UserPublic:
    user = svc.create_user(
        session, state.passwords, state.clock.now(), body.email, body.password, body.is_admin, body.tenant_id
    )
    session.commit()
    return svc.user_public(user)


@router.patch("/{user_id}")
def update_user(
    user_id: Id, body: UserUpdate, session: SessionDep, state: StateDep, admin: AdminUser
) -> UserPublic:
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"user {user_id} not found")
    if body.disabled is not None:
        if user.id == admin.id and body.disabled:
            raise HTTPException(status_code=409, detail="you cannot disable yourself")
        user.disabled = body.disabled
        if body.disabled:
            svc.end_sessions(session, user.id)  # a re-enabled user signs in again
    if body.password is not None:
        user.password_hash = state.passwords.hash(body.password)
        svc.end_sessions(session, user.id)
    session.commit()
    return svc.user_public(user)
