"""Who may touch what: a matrix over the user endpoints, and tenant isolation of every list.

Actors: nobody, an agent (its token is not a user credential), a user of the other tenant, a user
of the owning tenant and the MSP admin. Another tenant's objects answer 404, exactly like objects
that do not exist, so nothing of one tenant is visible to another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.server.conftest import PASSWORD, Actor, World

DENIED_AS_MISSING = 404


def _objects(world: World) -> dict[str, Any]:
    job = world.job()
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
    world.agent_a.post(
        "/api/agent/push_events", json={"run_id": run["id"], "events": [{"seq": 1, "code": "X"}]}
    )
    cmd = world.user_a.post(
        f"/api/agents/{world.agent_a.id}/commands",
        json={"type": "maintenance", "job_id": job["id"], "payload": {"mode": "check"}},
    ).json()
    return {
        "tenant": world.tenant_a["id"],
        "agent": world.agent_a.id,
        "job": job["id"],
        "run": run["id"],
        **{"command": cmd["id"]},
    }


# (method, path template, json body or None) of endpoints on tenant A's objects
TENANT_ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/api/tenants/{tenant}", None),
    ("POST", "/api/tenants/{tenant}/enrollment-token", None),
    ("GET", "/api/agents/{agent}", None),
    ("GET", "/api/agents/{agent}/disks", None),
    ("GET", "/api/agents/{agent}/commands", None),
    ("POST", "/api/agents/{agent}/commands", {"type": "maintenance", "job_id": "{job}", "payload": {}}),
    ("GET", "/api/jobs/{job}", None),
    ("PATCH", "/api/jobs/{job}", {"name": "renamed"}),
    ("POST", "/api/jobs/{job}/run", None),
    ("GET", "/api/jobs/{job}/history", None),
    ("GET", "/api/runs/{run}", None),
    ("GET", "/api/runs/{run}/events", None),
    ("POST", "/api/runs/{run}/cancel", None),
    ("GET", "/api/commands/{command}", None),
]
DESTRUCTIVE = [("DELETE", "/api/jobs/{job}", None), ("POST", "/api/agents/{agent}/revoke", None)]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
            return ids[value[1:-1]]
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _call(actor: Actor, method: str, path: str, body: Any, ids: dict[str, Any]) -> httpx.Response:
    kwargs = {"json": _fill(body, ids)} if body is not None else {}
    return actor.request(method, _fill(path, ids), **kwargs)


def _check(world: World, endpoints: list[tuple[str, str, Any]], ids: dict[str, Any]) -> None:
    nobody = Actor(world.client)
    expectations: list[tuple[str, Actor, Callable[[int], bool]]] = [
        ("nobody", nobody, lambda s: s == 401),
        ("agent", world.agent_a, lambda s: s == 401),
        ("other tenant", world.user_b, lambda s: s == DENIED_AS_MISSING),
        ("owner", world.user_a, lambda s: s not in (401, 403, 404, 422)),
        ("admin", world.admin, lambda s: s not in (401, 403, 404, 422)),
    ]
    for method, path, body in endpoints:
        for name, actor, ok in expectations:
            if name == "admin" and (method, path) in [(m, p) for m, p, _ in DESTRUCTIVE]:
                continue  # already gone after the owner's call
            r = _call(actor, method, path, body, ids)
            assert ok(r.status_code), f"{name}: {method} {path} -> {r.status_code} {r.text}"


def test_matrix_on_tenant_objects(world: World) -> None:
    ids = _objects(world)
    _check(world, TENANT_ENDPOINTS, ids)
    _check(world, DESTRUCTIVE, ids)


def test_admin_only_endpoints(world: World) -> None:
    calls = [
        ("POST", "/api/tenants", {"name": "Initech"}),
        (
            "POST",
            "/api/users",
            {"email": "x@y.example", "password": PASSWORD, "tenant_id": world.tenant_a["id"]},
        ),
        ("PATCH", f"/api/users/{world.user_b.id}", {"disabled": False}),
    ]
    for method, path, body in calls:
        assert world.client.request(method, path, json=body).status_code == 401
        assert world.agent_a.request(method, path, json=body).status_code == 401
        for user in (world.user_a, world.user_b):
            r = user.request(method, path, json=body)
            assert r.status_code == 403, f"{method} {path} -> {r.status_code}"
        assert world.admin.request(method, path, json=body).status_code in (200, 201)


def test_lists_show_nothing_of_another_tenant(world: World) -> None:
    ids = _objects(world)
    world.agent_a.post("/api/agent/report_disks", json={"disks": [], "volumes": [{"path": "C:"}]})
    tenant_b = world.tenant_b["id"]
    for path in ("/api/tenants", "/api/agents", "/api/jobs", "/api/runs", "/api/users"):
        for params in ({}, {"tenant_id": world.tenant_a["id"]}):
            body = world.user_b.get(path, params=params).json()
            assert isinstance(body, list)
            tenants = {item.get("tenant_id", item.get("id")) for item in body}
            assert tenants <= {tenant_b}, f"{path} {params}: {body}"
    assert world.user_b.get("/api/jobs", params={"agent_id": ids["agent"]}).json() == []
    assert world.user_b.get("/api/runs", params={"job_id": ids["job"]}).json() == []
    # the admin sees both tenants and can narrow to one (the dashboard's tenant switcher)
    assert {t["name"] for t in world.admin.get("/api/tenants").json()} == {"Acme", "Globex"}
    agents = world.admin.get("/api/agents", params={"tenant_id": tenant_b}).json()
    assert [a["tenant_id"] for a in agents] == [tenant_b]
    assert len(world.admin.get("/api/agents").json()) == 2


def test_agents_are_scoped_to_themselves(world: World) -> None:
    ids = _objects(world)
    assert world.agent_b.post("/api/agent/poll_commands").json()["commands"] == []
    r = world.agent_b.post(
        "/api/agent/ack_command", json={"command_id": ids["command"], "status": "completed"}
    )
    assert r.status_code == 404
    assert (
        world.agent_b.post(
            "/api/agent/update_run", json={"run_id": ids["run"], "progress_pct": 1}
        ).status_code
        == 404
    )
    r = world.agent_b.post("/api/agent/push_events", json={"run_id": ids["run"], "events": []})
    assert r.status_code == 404
    assert world.agent_b.post("/api/agent/next_run", params={"run_id": ids["run"]}).json()["run"] is None


def test_tenant_user_cannot_create_jobs_for_another_tenant_or_sessions_on_its_jobs(world: World) -> None:
    ids = _objects(world)
    r = world.user_b.post("/api/recovery/sessions", json={"job_id": ids["job"], "snapshot_id": "s"})
    assert r.status_code == 422
    r = world.user_b.post(
        f"/api/agents/{world.agent_b.id}/commands",
        json={"type": "maintenance", "job_id": ids["job"], "payload": {}},
    )
    assert r.status_code == 422  # A's job is not one of B's agent's tenant
