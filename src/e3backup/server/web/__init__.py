"""The web dashboard: server-rendered pages (Jinja2), a small CSS file and a small script.

Pages: ``/`` overview, ``/agents`` (+ one agent), ``/jobs`` (+ the wizard at ``/jobs/new`` and
one job with its history charts), ``/runs`` (+ one run with live progress, events and the
restore button), and the sign-in, sign-out and first-admin forms. Every page checks the session
and the tenant like the JSON API (``deps``); forms carry the session's CSRF token.

:func:`install` mounts it on the app: its routers, ``/static``, and the handlers that send an
anonymous browser to the sign-in form and show errors as pages rather than JSON.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from e3backup.server.web import (
    agents,
    alerts,
    auth,
    browse,
    controls,
    destinations,
    jobs,
    overview,
    pick_restore,
    restore_points,
    runs,
    users,
)
from e3backup.server.web.deps import LoginRequired, Page, page_scope, page_session
from e3backup.server.web.templating import STATIC, render

ROUTERS = [auth.router, overview.router, agents.router, jobs.router, runs.router, restore_points.router,
           browse.router, pick_restore.router, alerts.router, destinations.router,
           controls.router, users.router]


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if not _wants_html(request):  # a script (live progress, disk choices): no redirect to a form
        return JSONResponse({"detail": "not signed in"}, status_code=401)
    return RedirectResponse(f"/login?next={exc.next_url}" if exc.next_url != "/" else "/login", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _wants_html(request) or exc.status_code < 400:
        return await http_exception_handler(request, exc)
    return await run_in_threadpool(_error_page, request, exc.status_code, str(exc.detail))


def _error_page(request: Request, status: int, detail: str) -> Response:
    """The error as a page, with the navigation when the visitor is signed in."""
    state = request.app.state.e3
    with state.sessions() as session:
        try:
            user_session = page_session(request, session, state)
        except LoginRequired:
            return render(request, "error.html", status_code=status, status=status, detail=detail)
        scope = page_scope(request, session, user_session)
        return Page(request, user_session, scope, state).render(
            "error.html", status_code=status, status=status, detail=detail
        )


def install(app: FastAPI) -> None:
    """Mount the dashboard on ``app`` (before the API routers, which keep their own paths)."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(HTTPException, _http_error)


__all__ = ["install"]
