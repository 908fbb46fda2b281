from __future__ import annotations

from tests.server.conftest import World


def test_health_and_openapi(world: World) -> None:
    r = world.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    paths = world.client.get("/openapi.json").json()["paths"]
    assert "/api/agent/next_run" in paths
    assert "/api/recovery/refresh_session" in paths
