"""Who is asking, for pages: the signed-in user, the tenant in view, CSRF on form posts.

The JSON API answers 401 to anonymous callers; a page sends them to the sign-in form instead
(:class:`LoginRequired`, turned into a redirect by the web package). Objects of another tenant
answer 404 exactly as in the API: the page dependencies call the API's ``visible_*`` checks.

Admins choose the tenant in view with the tenant switcher (a cookie, ``e3_tenant``; empty means
all tenants). Tenant users always see only their own tenant; the cookie is ignored for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute

from e3backup.api.common import Id
from e3backup.server import deps as api_deps
from e3backup.server.db.models import Agent, Job, Run, Tenant, User, UserSession
from e3backup.server.deps import SESSION_COOKIE, SessionDep, StateDep
from e3backup.server.security import csrf
from e3backup.server.security.roles import Permission
from e3backup.server.services import users as users_service

TENANT_COOKIE = "e3_tenant"

_Query = TypeVar("_Query", bound=Select[Any])


class LoginRequired(Exception):
    """An anonymous (or expired) visitor asked for a page: send them to sign in, then back."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def _local_url(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{request.url.path}{query}"


def page_session(request: Request, session: SessionDep, state: StateDep) -> UserSession:
    row = users_service.live_session(session, request.cookies.get(SESSION_COOKIE), state.clock.now())
    if row is None:
        raise LoginRequired(_local_url(request) if request.method == "GET" else "/")
    return row


PageSession = Annotated[UserSession, Depends(page_session)]


def form_session(user_session: PageSession, csrf_token: Annotated[str | None, Form()] = None) -> UserSession:
    """A signed-in user posting a form; the form must carry the session's CSRF token."""
    if not csrf.tokens_match(user_session.csrf_token, csrf_token):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token (csrf_token form field)")
    return user_session


FormSession = Annotated[UserSession, Depends(form_session)]


def page_require(permission: Permission) -> Callable[[UserSession], UserSession]:
    """A page dependency: the signed-in user's session if their role grants ``permission``, the
    same rule as the API (``deps.require``); the templates hide what a role may not do."""

    def check(user_session: PageSession) -> UserSession:
        api_deps.require(permission)(user_session.user)
        return user_session

    return check


PageOperator = Annotated[UserSession, Depends(page_require(Permission.OPERATE))]
PageManager = Annotated[UserSession, Depends(page_require(Permission.MANAGE))]
PageUsers = Annotated[UserSession, Depends(page_require(Permission.USERS))]


@dataclass
class Scope:
    """The tenant in view: a tenant user's own, or the admin's choice (None: all tenants)."""

    user: User
    tenant: Tenant | None
    tenants: list[Tenant]

    @property
    def all_tenants(self) -> bool:
        return self.user.is_admin and self.tenant is None

    def where(self, query: _Query, column: InstrumentedAttribute[int]) -> _Query:
        if self.all_tenants:
            return query
        return query.where(column == (self.tenant.id if self.tenant else self.user.tenant_id))

    @property
    def tenant_ids(self) -> list[int] | None:
        """The tenants in view (None: all)."""
        if self.all_tenants:
            return None
        return [self.tenant.id if self.tenant else (self.user.tenant_id or 0)]

    def tenant_name(self, tenant_id: int | None) -> str:
        return next((t.name for t in self.tenants if t.id == tenant_id), "")


def page_scope(request: Request, session: SessionDep, user_session: PageSession) -> Scope:
    user = user_session.user
    if not user.is_admin:
        own = session.get(Tenant, user.tenant_id) if user.tenant_id is not None else None
        return Scope(user, own, [own] if own else [])
    tenants = list(session.scalars(select(Tenant).order_by(Tenant.name)))
    chosen = request.cookies.get(TENANT_COOKIE, "")
    return Scope(user, next((t for t in tenants if str(t.id) == chosen), None), tenants)


ScopeDep = Annotated[Scope, Depends(page_scope)]


@dataclass
class Page:
    """What every page template gets: the request, the user, the tenant scope, the CSRF token."""

    request: Request
    user_session: UserSession
    scope: Scope
    state: Any

    @property
    def user(self) -> User:
        return self.user_session.user

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        from e3backup.server.web.templating import render

        return render(
            self.request,
            template,
            status_code=status_code,
            user=self.user,
            scope=self.scope,
            csrf_token=self.user_session.csrf_token,
            now=self.state.clock.now(),
            **context,
        )


def page(request: Request, user_session: PageSession, scope: ScopeDep, state: StateDep) -> Page:
    return Page(request, user_session, scope, state)


PageDep = Annotated[Page, Depends(page)]


def page_agent(agent_id: Id, session: SessionDep, user_session: PageSession) -> Agent:
    return api_deps.visible_agent(agent_id, session, user_session.user)


def page_job(job_id: Id, session: SessionDep, user_session: PageSession) -> Job:
    return api_deps.visible_job(job_id, session, user_session.user)


def page_run(run_id: Id, session: SessionDep, user_session: PageSession) -> Run:
    return api_deps.visible_run(run_id, session, user_session.user)


PageAgent = Annotated[Agent, Depends(page_agent)]
PageJob = Annotated[Job, Depends(page_job)]
PageRun = Annotated[Run, Depends(page_run)]

__all__ = [
    "TENANT_COOKIE",
    "FormSession",
    "LoginRequired",
    "Page",
    "PageAgent",
    "PageDep",
    "PageJob",
    "PageManager",
    "PageOperator",
    "PageRun",
    "PageSession",
    "PageUsers",
    "Scope",
    "ScopeDep",
]
