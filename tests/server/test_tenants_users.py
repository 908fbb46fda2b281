"""Tenants and users: creation, validation, listing."""

from __future__ import annotations

from tests.server.conftest import PASSWORD, World, login


def _fields(r: object) -> list[str]:
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    return [e["field"] for e in r.json()["errors"]]  # type: ignore[attr-defined]


def test_create_and_read_tenant(world: World) -> None:
    r = world.admin.post("/api/tenants", json={"name": "Initech"})
    assert r.status_code == 201
    tenant = r.json()
    assert (tenant["name"], tenant["has_enrollment_token"]) == ("Initech", False)
    assert world.admin.get(f"/api/tenants/{tenant['id']}").json() == tenant
    assert world.admin.get("/api/tenants/9999").status_code == 404
    assert world.user_a.get("/api/tenants").json() == [world.tenant_a]


def test_tenant_validation(world: World) -> None:
    assert _fields(world.admin.post("/api/tenants", json={"name": "Acme"})) == ["name"]
    assert _fields(world.admin.post("/api/tenants", json={"name": ""})) == ["name"]
    assert _fields(world.admin.post("/api/tenants", json={"name": "   "})) == ["name"]
    assert _fields(world.admin.post("/api/tenants", json={})) == ["name"]
    assert _fields(world.admin.post("/api/tenants", json={"name": "X", "color": "red"})) == ["color"]


def test_create_users(world: World) -> None:
    r = world.admin.post(
        "/api/users",
        json={"email": "Carol@Acme.example", "password": PASSWORD, "tenant_id": world.tenant_a["id"]},
    )
    assert r.status_code == 201
    assert (r.json()["email"], r.json()["tenant_id"], r.json()["is_admin"]) == (
        "carol@acme.example",
        world.tenant_a["id"],
        False,
    )
    assert "password" not in r.text and "hash" not in r.text
    assert login(world.client, "carol@acme.example").get("/api/jobs").status_code == 200
    r = world.admin.post(
        "/api/users", json={"email": "root2@msp.example", "password": PASSWORD, "is_admin": True}
    )
    assert r.status_code == 201
    emails = [u["email"] for u in world.user_a.get("/api/users").json()]
    assert emails == ["alice@acme.example", "carol@acme.example"]
    assert len(world.admin.get("/api/users").json()) == 5
    only_b = world.admin.get("/api/users", params={"tenant_id": world.tenant_b["id"]}).json()
    assert [u["email"] for u in only_b] == ["bob@globex.example"]


def test_user_validation(world: World) -> None:
    a = world.tenant_a["id"]
    cases = [
        ({"email": "dave@acme.example", "password": PASSWORD}, "tenant_id"),
        ({"email": "dave@acme.example", "password": PASSWORD, "tenant_id": 999}, "tenant_id"),
        ({"email": "dave@msp.example", "password": PASSWORD, "is_admin": True, "tenant_id": a}, "tenant_id"),
        ({"email": "alice@acme.example", "password": PASSWORD, "tenant_id": a}, "email"),
        ({"email": "not-an-email", "password": PASSWORD, "tenant_id": a}, "email"),
        ({"email": "dave@acme.example", "password": "short", "tenant_id": a}, "password"),
        ({"email": "dave@acme.example", "password": PASSWORD, "tenant_id": a, "is_admin": "yes"}, "is_admin"),
    ]
    for body, field in cases:
        assert _fields(world.admin.post("/api/users", json=body)) == [field], body


def test_update_user_password(world: World) -> None:
    r = world.admin.patch(f"/api/users/{world.user_a.id}", json={"password": "a brand new passphrase"})
    assert r.status_code == 200
    assert world.user_a.get("/api/auth/me").status_code == 401  # signed out everywhere
    assert (
        world.client.post(
            "/api/auth/login", json={"email": "alice@acme.example", "password": PASSWORD}
        ).status_code
        == 401
    )
    assert login(world.client, "alice@acme.example", "a brand new passphrase").info["id"] == world.user_a.id
    assert world.admin.patch("/api/users/9999", json={"disabled": True}).status_code == 404
    assert world.admin.patch(f"/api/users/{world.admin.id}", json={"disabled": True}).status_code == 409


def test_me_and_whoami(world: World) -> None:
    me = world.user_a.get("/api/auth/me").json()
    assert me["user"]["email"] == "alice@acme.example"
    assert me["csrf_token"] == world.user_a.headers["X-CSRF-Token"]
    assert world.user_a.get("/api/auth/whoami").json()["tenant_id"] == world.tenant_a["id"]
