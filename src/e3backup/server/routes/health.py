"""Liveness: the process answers and the database is reachable."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from e3backup import __version__
from e3backup.server.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok", "version": __version__}
