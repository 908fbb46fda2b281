"""Who may touch what: a matrix over the user endpoints by tenant and role, and tenant isolation
of every list.

Actors: nobody, an agent (its token is not a user credential), users of the other tenant (an
administrator and a read-only user), the owning tenant's administrator, operator and read-only
user, and MSP staff. Another tenant's objects answer 404, exactly like objects that do not exist,
so nothing of one tenant is visible to another; within the tenant a role that may not do
something gets 403 (roles: ``security/roles.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from e3backup.server.security.roles import Role
from tests.server.conftest import PASSWORD, Actor, World

DENIED_AS_MISSING = 404
VIEW, OPERATE, MANAGE = "view", "operate", "manage"


def role_user(app: FastAPI, world: World, email: str, tenant: dict[str, Any], role: Role) -> Actor:
    """A signed-in user of ``tenant`` with ``role`` (made through the services, like ``world``)."""
    from e3backup.server.services import users

    state = app.state.e3
    with state.sessions() as session:
        now = state.clock.now()
        user = users.create_user(session, state.passwords, now, email, PASSWORD, False, tenant["id"], role)
        row, token = users.start_session(session, user, now, state.settings.session_hours)
        info = users.user_public(user).model_dump(mode="json")
        session.commit()
        headers = {"Cookie": f"e3_session={token}", "X-CSRF-Token": row.csrf_token}
    return Actor(world.client, headers, info)


@pytest.fixture
def roles(app: FastAPI, world: World) -> dict[str, Actor]:
    return {
        "operator": role_user(app, world, "olga@acme.example", world.tenant_a, Role.OPERATOR),
        "reader": role_user(app, world, "rita@acme.example", world.tenant_a, Role.READ_ONLY),
        "other reader": role_user(app, world, "ray@globex.example", world.tenant_b, Role.READ_ONLY),
    }


def _objects(world: World) -> dict[str, Any]:
    job = world.job(storage_mode="direct")  # direct: its agent takes maintenance commands
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
    world.agent_a.post(
        "/api/agent/push_events", json={"run_id": run["id"], "events": [{"seq": 1, "code": "X"}]}
    )
    cmd = world.user_a.post(
        f"/api/agents/{world.agent_a.id}/commands",
        json={"type": "maintenance", "job_id": job["id"], "payload": {"mode": "check"}},
    ).json()
    dest = world.user_a.post("/api/destinations", json={"name": "Offsite", "destination": {
        "type": "local", "path": "/srv/backups", "repository_password": "a long repository password"}}).json()
    return {
        "destination": dest["id"],
        "tenant": world.tenant_a["id"],
        "agent": world.agent_a.id,
        "job": job["id"],
        "run": run["id"],
        **{"command": cmd["id"]},
    }


# (method, path template, json body or None, permission) of endpoints on tenant A's objects
TENANT_ENDPOINTS: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/tenants/{tenant}", None, VIEW),
    ("POST", "/api/tenants/{tenant}/enrollment-token", None, MANAGE),
    ("GET", "/api/agents/{agent}", None, VIEW),
    ("GET", "/api/agents/{agent}/disks", None, VIEW),
    ("GET", "/api/agents/{agent}/commands", None, VIEW),
    ("POST", "/api/agents/{agent}/commands", {"type": "maintenance", "job_id": "{job}", "payload": {}}, OPERATE),
    ("GET", "/api/jobs/{job}", None, VIEW),
    ("PATCH", "/api/jobs/{job}", {"name": "renamed"}, MANAGE),
    ("POST", "/api/jobs/{job}/run", None, OPERATE),
    ("GET", "/api/jobs/{job}/history", None, VIEW),
    ("GET", "/api/runs/{run}", None, VIEW),
    ("GET", "/api/runs/{run}/events", None, VIEW),
    ("POST", "/api/runs/{run}/cancel", None, OPERATE),
    ("GET", "/api/commands/{command}", None, VIEW),
    ("POST", "/api/recovery/sessions/{run}/revoke", None, MANAGE),
    ("GET", "/api/destinations/{destination}", None, VIEW),
    ("PATCH", "/api/destinations/{destination}", {"quota_bytes": 5}, MANAGE),
    ("GET", "/api/tenants/{tenant}/quota", None, VIEW),
]
DESTRUCTIVE = [
    ("DELETE", "/api/jobs/{job}", None, MANAGE),
    ("POST", "/api/agents/{agent}/revoke", None, MANAGE),
    ("DELETE", "/api/destinations/{destination}", None, MANAGE),
]
GRANTED = {"operator": {VIEW, OPERATE}, "reader": {VIEW}}


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


def _allowed(s: int) -> bool:
    return s not in (401, 403, 404, 422)


def _check(
    world: World, roles: dict[str, Actor], endpoints: list[tuple[str, str, Any, str]], ids: dict[str, Any]
) -> None:
    nobody = Actor(world.client)
    for method, path, body, permission in endpoints:
        expectations: list[tuple[str, Actor, Callable[[int], bool]]] = [
            ("nobody", nobody, lambda s: s == 401),
            ("agent", world.agent_a, lambda s: s == 401),
            ("other tenant", world.user_b, lambda s: s == DENIED_AS_MISSING),
            ("other tenant's reader", roles["other reader"], lambda s: s == DENIED_AS_MISSING),
            # roles within the tenant, before the owner (whose call may delete the object)
            *[
                (name, roles[name], _allowed if permission in GRANTED[name] else (lambda s: s == 403))
                for name in ("reader", "operator")
            ],
            ("owner", world.user_a, _allowed),
            ("admin", world.admin, _allowed),
        ]
        for name, actor, ok in expectations:
            if name == "admin" and (method, path) in [(m, p) for m, p, _, _ in DESTRUCTIVE]:
                continue  # already gone after the owner's call
            r = _call(actor, method, path, body, ids)
            assert ok(r.status_code), f"{name}: {method} {path} -> {r.status_code} {r.text}"


def test_matrix_on_tenant_objects(world: World, roles: dict[str, Actor]) -> None:
    ids = _objects(world)
    _check(world, roles, TENANT_ENDPOINTS, ids)
    _check(world, roles, DESTRUCTIVE, ids)


def test_msp_only_endpoints(world: World, roles: dict[str, Actor]) -> None:
    calls = [
        ("POST", "/api/tenants", {"name": "Initech"}),
        ("POST", "/api/users", {"email": "x@msp.example", "password": PASSWORD, "role": "msp_admin"}),
    ]
    for method, path, body in calls:
        assert world.client.request(method, path, json=body).status_code == 401
        assert world.agent_a.request(method, path, json=body).status_code == 401
        for user in (world.user_a, world.user_b, roles["operator"], roles["reader"]):
            r = user.request(method, path, json=body)
            assert r.status_code in (403, 422), f"{method} {path} -> {r.status_code}"
        assert world.admin.request(method, path, json=body).status_code in (200, 201)


def test_users_are_managed_by_their_tenants_administrators(world: World, roles: dict[str, Actor]) -> None:
    new = {"email": "nia@acme.example", "password": PASSWORD, "role": "operator"}
    for name in ("operator", "reader"):
        assert roles[name].post("/api/users", json=new).status_code == 403
        assert roles[name].get("/api/users").status_code == 403
        assert roles[name].patch(f"/api/users/{roles['reader'].id}", json={"disabled": True}).status_code == 403
    # a tenant administrator: users of the own tenant only, tenant roles only
    r = world.user_a.post("/api/users", json={**new, "tenant_id": world.tenant_b["id"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "tenant_id"
    r = world.user_a.post("/api/users", json={**new, "role": "msp_admin"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "role"
    r = world.user_a.post("/api/users", json=new)
    assert r.status_code == 201, r.text
    assert (r.json()["role"], r.json()["tenant_id"], r.json()["is_admin"]) == ("operator", world.tenant_a["id"], False)
    assert {u["tenant_id"] for u in world.user_a.get("/api/users").json()} == {world.tenant_a["id"]}
    assert world.user_a.patch(f"/api/users/{world.user_b.id}", json={"disabled": True}).status_code == 404
    assert world.user_a.patch(f"/api/users/{world.admin.id}", json={"disabled": True}).status_code == 404
    r = world.user_a.patch(f"/api/users/{roles['reader'].id}", json={"role": "operator"})
    assert r.status_code == 200 and r.json()["role"] == "operator"
    assert roles["reader"].post(f"/api/jobs/{world.job()['id']}/run").status_code == 201  # at once
    r = world.user_a.patch(f"/api/users/{roles['reader'].id}", json={"role": "msp_admin"})
    assert r.status_code == 422
    assert world.user_a.patch(f"/api/users/{world.user_a.id}", json={"role": "read_only"}).status_code == 422
    # MSP staff: every tenant
    assert world.admin.patch(f"/api/users/{world.user_b.id}", json={"disabled": False}).status_code == 200


def test_reading_roles_cannot_change_anything(world: World, roles: dict[str, Actor]) -> None:
    reader, operator = roles["reader"], roles["operator"]
    job = {"name": "x", "engine": "files", "agent_id": world.agent_a.id, "source_path": "/x",
           "destination": {"type": "local", "path": "/r", "repository_password": "long enough"}}
    for actor in (reader, operator):
        assert actor.post("/api/jobs", json=job).status_code == 403
    assert reader.post(f"/api/agents/{world.agent_a.id}/disks/refresh").status_code == 403
    assert world.user_a.post("/api/jobs", json=job).status_code == 201


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
