"""Malformed requests to every JSON endpoint get a clear 4xx, never a server error."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import Actor, World

BAD_BODIES: list[Any] = [
    [],
    "text",
    42,
    None,
    {"run_id": "seven"},
    {"run_id": True},
    {"unexpected": {"x": [1]}},
]


def test_every_endpoint_answers_malformed_bodies_with_4xx(world: World) -> None:
    job = world.job(engine="disk_image", disk_source_volume="\\\\.\\PhysicalDrive0", source_path="")
    r = world.user_a.post("/api/recovery/sessions", json={"job_id": job["id"], "snapshot_id": "s"})
    console = Actor(world.client, {"Authorization": f"Bearer {r.json()['session_token']}"})
    ids = {"tenant_id": world.tenant_a["id"], "agent_id": world.agent_a.id, "job_id": job["id"], "run_id": 1}
    ids |= {"user_id": world.user_a.id, "command_id": 1, "destination_id": 1}
    paths = world.client.get("/openapi.json").json()["paths"]
    checked = 0
    for path, methods in paths.items():
        actor = world.agent_a if path.startswith("/api/agent/") else world.admin
        if path.startswith("/api/recovery/") and "/sessions" not in path:
            actor = console
        for method in methods:
            if method not in ("post", "patch"):
                continue
            url = path.format(**ids)
            for body in BAD_BODIES:
                r = actor.request(method.upper(), url, json=body)
                if r.status_code < 400:
                    continue  # endpoints without a body (run now, revoke, ...) may accept anything
                assert 400 <= r.status_code < 500, f"{method} {path} {body!r}: {r.status_code}"
                assert r.json()["detail"], f"{method} {path} {body!r}"
            r = actor.request(
                method.upper(), url, content=b"{broken", headers={"Content-Type": "application/json"}
            )
            assert r.status_code < 500, f"{method} {path}: {r.status_code}"
            checked += 1
    assert checked >= 25
