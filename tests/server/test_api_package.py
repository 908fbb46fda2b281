"""The shared ``e3backup.api`` package: pure pydantic, complete, and routed by the server."""

from __future__ import annotations

import subprocess
import sys

import e3backup.api as api
from e3backup.api import paths
from tests.server.conftest import World


def test_api_package_does_not_import_the_server_stack() -> None:
    code = (
        "import sys, e3backup.api, e3backup.api.paths; "
        "bad = [m for m in ('sqlalchemy', 'fastapi', 'e3backup.server') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_exported_names_exist() -> None:
    for name in api.__all__:
        assert hasattr(api, name), name


def test_every_protocol_path_is_routed(world: World) -> None:
    routed = world.client.get("/openapi.json").json()["paths"]
    for path in (*paths.AGENT_PATHS, *paths.RECOVERY_PATHS):
        assert "post" in routed.get(path, {}), path


def test_update_run_accepts_the_seeds_manifest_id() -> None:
    update = api.UpdateRunRequest.model_validate({"run_id": 1, "manifest_id": "m1"})
    assert update.snapshot_id == "m1"


def test_engine_alias() -> None:
    job = api.RunAssignment.model_validate(
        {
            "run_id": 1,
            "job_id": 1,
            "job_name": "j",
            "engine": "kopia",
            "destination": {"type": "local", "path": "/r", "repository_password": "12345678"},
        }
    )
    assert job.engine is api.Engine.FILES
