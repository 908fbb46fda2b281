"""The app for ``uvicorn --workers N`` (and any ASGI server that imports a factory).

``e3backup server --workers N`` puts its validated settings in ``E3BACKUP_SERVER_SETTINGS``
(JSON) and lets uvicorn start N processes that each call :func:`app_from_env`. The processes
share nothing in memory: they coordinate through PostgreSQL exactly as replicas on several
machines do (leader election, LISTEN/NOTIFY, rate limits in the database). Run directly:

    E3BACKUP_SERVER_SETTINGS='{"data_dir": "...", "database_url": "postgresql+psycopg://..."}' \\
        uvicorn --factory e3backup.server.asgi:app_from_env --workers 4
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from e3backup.errors import UsageError
from e3backup.server.app import create_app
from e3backup.server.config import Settings
from e3backup.server.logs import configure_server_logging

SETTINGS_ENV = "E3BACKUP_SERVER_SETTINGS"


def app_from_env() -> FastAPI:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise UsageError(f"{SETTINGS_ENV} is not set: it holds the server's settings as JSON")
    configure_server_logging()  # a worker process: nothing set its logging up
    return create_app(Settings.model_validate_json(raw))


__all__ = ["SETTINGS_ENV", "app_from_env"]
