"""The audit log: sign-ins (good and bad), sign-outs, job changes and user changes are recorded
with who, when, from where, and are visible to MSP staff (all) and to a tenant's administrators
(their tenant only)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.server.conftest import ADMIN_EMAIL, PASSWORD, World, login


def _actions(actor: Any, **params: Any) -> list[tuple[str, str, int | None]]:
    r = actor.get("/api/audit", params=params)
    assert r.status_code == 200, r.text
    return [(e["action"], e["actor"], e["target_id"]) for e in r.json()["items"]]


def test_sign_ins_and_sign_outs_are_recorded(world: World, client: TestClient) -> None:
    r = client.post("/api/auth/login", json={"email": "alice@acme.example", "password": "wrong password"})
    assert r.status_code == 401
    alice = login(client, "alice@acme.example", PASSWORD)
    assert alice.post("/api/auth/logout").status_code == 204
    entries = world.admin.get("/api/audit", params={"action": "auth."}).json()["items"]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("auth.logout", "alice@acme.example"),
        ("auth.login", "alice@acme.example"),
        ("auth.login_failed", "alice@acme.example"),
    ]
    assert entries[1]["user_id"] == alice.id and entries[1]["tenant_id"] == world.tenant_a["id"]
    assert entries[2]["user_id"] is None and entries[2]["ip"] == "203.0.113.7"


def test_job_changes_are_recorded_without_secrets(world: World) -> None:
    job = world.job(name="Docs")
    assert world.user_a.patch(f"/api/jobs/{job['id']}", json={"name": "Docs 2"}).status_code == 200
    assert world.user_a.post(f"/api/jobs/{job['id']}/run").status_code == 201
    assert world.user_a.delete(f"/api/jobs/{job['id']}").status_code == 204
    r = world.admin.get("/api/audit", params={"action": "job."})
    assert "do-not-leak" not in r.text
    items = r.json()["items"]
    assert [(e["action"], e["target_id"], e["details"]["name"]) for e in items] == [
        ("job.delete", job["id"], "Docs 2"),
        ("job.run", job["id"], "Docs 2"),
        ("job.update", job["id"], "Docs 2"),
        ("job.create", job["id"], "Docs"),
    ]
    assert items[2]["details"]["fields"] == ["name"]
    assert {e["actor"] for e in items} == {"alice@acme.example"}


def test_tenants_see_only_their_entries_and_operators_none(world: World) -> None:
    world.job(name="Acme job")
    world.job(owner=world.user_b, name="Globex job")
    assert [a for a, _, _ in _actions(world.user_b)] == ["job.create"]
    assert _actions(world.user_b, tenant_id=world.tenant_a["id"]) == _actions(world.user_b)
    assert len(_actions(world.admin, action="job.create")) == 2
    r = world.user_a.post(
        "/api/users",
        json={"email": "op@acme.example", "password": PASSWORD, "role": "operator"},
    )
    assert r.status_code == 201, r.text
    operator = login(world.client, "op@acme.example")
    assert operator.get("/api/audit").status_code == 403
    entry = world.user_a.get("/api/audit", params={"action": "user.create"}).json()["items"][0]
    assert entry["details"] == {"email": "op@acme.example", "role": "operator"}
    assert ADMIN_EMAIL not in {e[1] for e in _actions(world.user_a)}
