"""Health for load balancers and orchestrators.

``/healthz``: the process answers and its database is reachable (what it always said).
``/readyz``: ready to serve: the database answers and its schema is this code's (or newer, during
a rolling upgrade); 503 otherwise, so a load balancer sends nothing to a replica that cannot
serve. It also says whether this replica leads the scheduler and listens for live updates.
Neither needs credentials nor says anything a caller could misuse.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from e3backup import __version__
from e3backup.server.db.migrate import schema_state
from e3backup.server.deps import SessionDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__}


@router.get("/readyz", response_model=None)
async def readyz(request: Request, state: StateDep) -> JSONResponse:
    body: dict[str, Any] = {"version": __version__}
    try:
        body["migrations"] = await run_in_threadpool(schema_state, state.engine)
        body["database"] = "ok"
    except Exception as e:  # any failure to reach or read the database: not ready, and why
        body["database"] = f"unreachable ({type(e).__name__})"
    scheduler = getattr(request.app.state, "scheduler", None)
    body["scheduler_leader"] = bool(scheduler is not None and scheduler.running and scheduler.leadership.is_leader())
    body["live_updates"] = "listening" if state.bus.connected else "reconnecting"
    ready = body["database"] == "ok" and body["migrations"] in ("current", "ahead")
    body["status"] = "ready" if ready else "not ready"
    return JSONResponse(body, status_code=200 if ready else 503)
