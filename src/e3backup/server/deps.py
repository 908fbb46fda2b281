"""Request dependencies: the session, who is calling, and what they may see.

Authentication and permission checks live here, not in handlers:

- ``CurrentUser``: a signed-in user (session cookie; unsafe methods need the CSRF token).
- ``AdminUser``: an MSP admin.
- ``CurrentAgent``: an enrolled agent (``Authorization: Bearer <agent token>``).
- ``AgentCall``: the same check for the agent's frequent calls, without an ORM object: the token
  cache answers most of them, and the handler records ``last_seen`` in its own thread hop.
- ``RecoveryAuth``: a recovery session for the ``run_id`` in the body; slides its expiry.
- ``VisibleTenant`` / ``VisibleAgent`` / ``VisibleJob`` / ``VisibleRun`` / ``VisibleCommand``: the
  path's object if the user may see it, else 404 (the same answer as "does not exist", so
  nothing of another tenant leaks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from e3backup.api.common import INT32_MAX, Id
from e3backup.server.db.models import Agent, Command, Job, RecoverySession, Run, Tenant, User, UserSession
from e3backup.server.problems import FieldError
from e3backup.server.security import csrf
from e3backup.server.security.roles import Permission
from e3backup.server.security.tokens import hash_token
from e3backup.server.services import recovery as recovery_service
from e3backup.server.services import users as users_service
from e3backup.server.state import ServerState

SESSION_COOKIE = "e3_session"
LAST_SEEN_RESOLUTION = timedelta(seconds=10)


async def get_state(request: Request) -> ServerState:
    """Async on purpose: FastAPI runs a sync dependency in the thread pool, a hop per request."""
    state: ServerState = request.app.state.e3
    return state


StateDep = Annotated[ServerState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


# --- users -----------------------------------------------------------------------------------


def current_user_session(request: Request, session: SessionDep, state: StateDep) -> UserSession:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise _unauthorized("not signed in")
    row = users_service.live_session(session, token, state.clock.now())
    if row is None:
        raise _unauthorized("session expired or signed out")
    if request.method not in csrf.SAFE_METHODS and not csrf.tokens_match(
        row.csrf_token, request.headers.get(csrf.HEADER)
    ):
        raise HTTPException(status_code=403, detail=f"missing or wrong CSRF token ({csrf.HEADER} header)")
    return row


CurrentUserSession = Annotated[UserSession, Depends(current_user_session)]


def current_user(user_session: CurrentUserSession) -> User:
    return user_session.user


CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status_code=403, detail="only MSP administrators may do this")
    return user


AdminUser = Annotated[User, Depends(admin_user)]

_NEEDS = {
    Permission.OPERATE: "an operator or administrator",
    Permission.MANAGE: "an administrator",
    Permission.USERS: "an administrator",
}


def require(permission: Permission) -> Callable[[User], User]:
    """A dependency: the signed-in user, if their role grants ``permission`` (else 403)."""

    def check(user: CurrentUser) -> User:
        if not user.can(permission):
            raise HTTPException(
                status_code=403, detail=f"your role ({user.role}) may not do this: it needs {_NEEDS[permission]}"
            )
        return user

    return check


OperatorUser = Annotated[User, Depends(require(Permission.OPERATE))]
ManagerUser = Annotated[User, Depends(require(Permission.MANAGE))]
UsersAdmin = Annotated[User, Depends(require(Permission.USERS))]


def can_see_tenant(user: User, tenant_id: int | None) -> bool:
    return user.is_admin or (tenant_id is not None and user.tenant_id == tenant_id)


_T = TypeVar("_T", Tenant, Agent, Job, Run, Command)


def _visible(session: Session, user: User, model: type[_T], obj_id: int, what: str) -> _T:
    obj = session.get(model, obj_id)
    tenant_id = obj.id if isinstance(obj, Tenant) else getattr(obj, "tenant_id", None)
    if obj is None or not can_see_tenant(user, tenant_id):
        raise HTTPException(status_code=404, detail=f"{what} {obj_id} not found")
    return obj


def visible_tenant(tenant_id: Id, session: SessionDep, user: CurrentUser) -> Tenant:
    return _visible(session, user, Tenant, tenant_id, "tenant")


def visible_agent(agent_id: Id, session: SessionDep, user: CurrentUser) -> Agent:
    return _visible(session, user, Agent, agent_id, "agent")


def visible_job(job_id: Id, session: SessionDep, user: CurrentUser) -> Job:
    job = _visible(session, user, Job, job_id, "job")
    if job.deleted_at is not None:  # kept only for its runs' restores
        raise HTTPException(status_code=404, detail=f"job {job_id} not found")
    return job


def visible_run(run_id: Id, session: SessionDep, user: CurrentUser) -> Run:
    return _visible(session, user, Run, run_id, "run")


def visible_command(command_id: Id, session: SessionDep, user: CurrentUser) -> Command:
    return _visible(session, user, Command, command_id, "command")


VisibleTenant = Annotated[Tenant, Depends(visible_tenant)]
VisibleAgent = Annotated[Agent, Depends(visible_agent)]
VisibleJob = Annotated[Job, Depends(visible_job)]
VisibleRun = Annotated[Run, Depends(visible_run)]
VisibleCommand = Annotated[Command, Depends(visible_command)]


# --- agents ----------------------------------------------------------------------------------


def current_agent(request: Request, session: SessionDep, state: StateDep) -> Agent:
    token = _bearer(request)
    if token is None:
        raise _unauthorized("agent token required (Authorization: Bearer)")
    agent = session.scalar(select(Agent).where(Agent.token_hash == hash_token(token)))
    if agent is None or agent.revoked:
        raise _unauthorized("unknown or revoked agent token")
    now = state.clock.now()
    if agent.last_seen_at is None or now - agent.last_seen_at >= LAST_SEEN_RESOLUTION:
        agent.last_seen_at = now  # written at most every few seconds, not on every call
        session.commit()
    return agent


CurrentAgent = Annotated[Agent, Depends(current_agent)]


@dataclass(frozen=True)
class AgentCaller:
    """An agent whose token was checked: who it is, and the token (its gateway token is derived
    from it)."""

    id: int
    tenant_id: int
    token: str
    token_hash: str
    last_seen_at: datetime | None


async def agent_call(request: Request, state: StateDep) -> AgentCaller:
    """The calling agent, from the token cache (no thread hop, no query) or one indexed lookup.

    Raises 401 like ``current_agent``. The handler does its work in :func:`agent_transaction`."""
    token = _bearer(request)
    if token is None:
        raise _unauthorized("agent token required (Authorization: Bearer)")
    token_hash = hash_token(token)
    known = state.agent_tokens.get(token_hash)
    if known is not None:
        return AgentCaller(known.agent_id, known.tenant_id, token, token_hash, known.last_seen_at)
    [caller] = await run_in_threadpool(look_up_agents, state, [(token, token_hash)])
    if caller is None:
        raise _unauthorized("unknown or revoked agent token")
    return caller


_LIVE_BY_HASH = select(Agent.token_hash, Agent.id, Agent.tenant_id, Agent.last_seen_at).where(
    Agent.token_hash.in_(bindparam("hashes", expanding=True)), Agent.revoked.is_(False)
)


def look_up_agents(state: ServerState, calls: list[tuple[str, str]]) -> list[AgentCaller | None]:
    """For each ``(token, token_hash)``, the live agent whose token it is (None: unknown or
    revoked), all in one query, remembered in the token cache. The cache's generation is taken
    before the read, so a revocation that lands meanwhile is not undone by caching the row."""
    tokens = state.agent_tokens
    generation = tokens.generation()
    with state.engine.connect() as conn:
        rows = {r.token_hash: r for r in conn.execute(_LIVE_BY_HASH, {"hashes": sorted({h for _, h in calls})})}
    out: list[AgentCaller | None] = []
    for token, token_hash in calls:
        row = rows.get(token_hash)
        if row is None:
            out.append(None)
            continue
        tokens.put(token_hash, row.id, row.tenant_id, row.last_seen_at, generation)
        out.append(AgentCaller(row.id, row.tenant_id, token, token_hash, row.last_seen_at))
    return out


@contextmanager
def agent_transaction(state: ServerState, caller: AgentCaller, *columns: Any) -> Iterator[tuple[Session, Row[Any]]]:
    """The session of an agent call's work, opened by one statement that re-checks the agent is
    not revoked, writes ``last_seen_at`` when due (``UPDATE ... RETURNING``) and reads ``columns``
    of its row; committed when the block ends. A block that fails still records the contact, as
    ``current_agent`` (which commits before the handler runs) does. 401 if the agent was revoked
    since its token was cached."""
    now = state.clock.now()
    due = caller.last_seen_at is None or now - caller.last_seen_at >= LAST_SEEN_RESOLUTION
    live = (Agent.id == caller.id, Agent.revoked.is_(False))
    with state.sessions() as session:
        conn = session.connection()
        if due:
            seen = update(Agent).where(*live).values(last_seen_at=now)
            row = conn.execute(seen.returning(Agent.id, *columns)).first()
        else:
            row = conn.execute(select(Agent.id, *columns).where(*live)).first()
        if row is None:
            state.agent_tokens.forget_agent(caller.id)
            raise _unauthorized("unknown or revoked agent token")
        try:
            yield session, row
            session.commit()
        except BaseException:
            session.rollback()
            if due:
                session.connection().execute(update(Agent).where(*live).values(last_seen_at=now))
                session.commit()
            raise
    if due:
        state.agent_tokens.seen(caller.token_hash, now)


AgentCall = Annotated[AgentCaller, Depends(agent_call)]


# --- recovery sessions -----------------------------------------------------------------------


async def recovery_auth(request: Request, state: StateDep) -> RecoverySession:
    """The caller's recovery session, if it is valid and its run is the body's ``run_id``.

    Every authenticated call slides the expiry (see :func:`services.recovery.touch`).
    """
    token = _bearer(request)
    if token is None:
        raise _unauthorized("recovery session token required (Authorization: Bearer)")
    try:
        body: Any = await request.json()
    except ValueError as e:
        raise HTTPException(status_code=422, detail="invalid request: body must be JSON") from e
    run_id = body.get("run_id") if isinstance(body, dict) else None
    if not isinstance(run_id, int) or isinstance(run_id, bool) or not 0 <= run_id <= INT32_MAX:
        raise FieldError("run_id", f"an integer from 0 to {INT32_MAX} is required")

    def check() -> RecoverySession:
        with state.sessions() as session:
            row = session.scalar(
                select(RecoverySession).where(RecoverySession.token_hash == hash_token(token))
            )
            now = state.clock.now()
            if row is None or row.expires_at <= now:
                raise _unauthorized("session token expired or unknown")
            if row.run_id != run_id:
                raise HTTPException(status_code=403, detail=f"this session is not for run {run_id}")
            why = recovery_service.ended(session, row)
            if why is not None:
                raise _unauthorized(f"recovery session ended: {why}")
            recovery_service.touch(row, now)
            session.commit()
            return row

    return await run_in_threadpool(check)


RecoveryAuth = Annotated[RecoverySession, Depends(recovery_auth)]

__all__ = [
    "SESSION_COOKIE",
    "AdminUser",
    "AgentCall",
    "AgentCaller",
    "CurrentAgent",
    "CurrentUser",
    "CurrentUserSession",
    "ManagerUser",
    "OperatorUser",
    "RecoveryAuth",
    "SessionDep",
    "StateDep",
    "UsersAdmin",
    "VisibleAgent",
    "VisibleCommand",
    "VisibleJob",
    "VisibleRun",
    "VisibleTenant",
    "agent_transaction",
    "can_see_tenant",
    "client_ip",
    "look_up_agents",
    "require",
]
