"""Sign-in, sessions, CSRF, the first-admin form and login rate limiting."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from e3backup.server.db.models import User
from tests.server.conftest import ADMIN_EMAIL, PASSWORD, FakeClock, World, login, make_admin


def test_login_sets_httponly_samesite_cookie_and_returns_csrf(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    r = client.post("/api/auth/login", json={"email": ADMIN_EMAIL.upper(), "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "e3_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie.replace("Lax", "lax")
    assert r.json()["user"]["is_admin"] is True
    assert len(r.json()["csrf_token"]) >= 32


def test_password_is_stored_as_argon2id(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    with app.state.e3.sessions() as s:
        stored = s.scalar(select(User.password_hash))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_wrong_password_and_unknown_user_get_the_same_401(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    a = client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong password"})
    b = client.post("/api/auth/login", json={"email": "nobody@x.example", "password": "wrong password"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


def test_unsafe_request_without_csrf_token_is_refused(world: World) -> None:
    no_csrf = {k: v for k, v in world.admin.headers.items() if k != "X-CSRF-Token"}
    r = world.client.post("/api/tenants", json={"name": "Initech"}, headers=no_csrf)
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    wrong = {**no_csrf, "X-CSRF-Token": "not-the-token"}
    assert world.client.post("/api/tenants", json={"name": "Initech"}, headers=wrong).status_code == 403
    assert world.client.get("/api/tenants", headers=no_csrf).status_code == 200  # safe methods need none
    assert world.admin.post("/api/tenants", json={"name": "Initech"}).status_code == 201


def test_logout_ends_the_session(world: World) -> None:
    assert world.user_a.get("/api/auth/me").status_code == 200
    assert world.user_a.post("/api/auth/logout").status_code == 204
    assert world.user_a.get("/api/auth/me").status_code == 401


def test_session_expires(world: World, clock: FakeClock) -> None:
    clock.advance(hours=12, seconds=1)
    assert world.user_a.get("/api/auth/me").status_code == 401


def test_disabled_user_cannot_sign_in_and_loses_sessions(world: World) -> None:
    r = world.admin.patch(f"/api/users/{world.user_a.id}", json={"disabled": True})
    assert r.status_code == 200
    assert world.user_a.get("/api/auth/me").status_code == 401
    r = world.client.post("/api/auth/login", json={"email": "alice@acme.example", "password": PASSWORD})
    assert r.status_code == 401


def test_re_enabling_a_user_does_not_revive_old_sessions(world: World) -> None:
    """Disabling deletes the sessions: the cookie of before stays dead after re-enabling."""
    assert world.admin.patch(f"/api/users/{world.user_a.id}", json={"disabled": True}).status_code == 200
    assert world.admin.patch(f"/api/users/{world.user_a.id}", json={"disabled": False}).status_code == 200
    assert world.user_a.get("/api/auth/me").status_code == 401
    assert world.user_a.get("/", headers={"Accept": "text/html"}, follow_redirects=False).status_code == 303
    assert login(world.client, "alice@acme.example").get("/api/auth/me").status_code == 200


def test_login_is_rate_limited_per_email_and_recovers_after_the_window(
    app: FastAPI, client: TestClient, clock: FakeClock
) -> None:
    make_admin(app)
    for _ in range(5):
        r = client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": "guess"})
        assert r.status_code == 401
    r = client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert r.status_code == 429  # even the right password waits
    assert int(r.headers["Retry-After"]) > 0
    clock.advance(seconds=301)
    assert (
        client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}).status_code == 200
    )


def _form_csrf(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def test_login_form_needs_the_double_submit_csrf_token(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    token = _form_csrf(client, "/login")
    r = client.post("/login", data={"email": ADMIN_EMAIL, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        "/login",
        data={"email": ADMIN_EMAIL, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "HttpOnly" in r.headers["set-cookie"]
    assert client.get("/api/auth/me").status_code == 200  # the cookie signs in


def test_login_form_wrong_password_shows_the_form_again(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    token = _form_csrf(client, "/login")
    r = client.post("/login", data={"email": ADMIN_EMAIL, "password": "nope", "csrf_token": token})
    assert r.status_code == 401
    assert "Wrong email or password" in r.text


def test_logout_form_needs_the_session_csrf_token(world: World) -> None:
    r = world.client.post(
        "/logout", data={}, headers={"Cookie": world.user_a.headers["Cookie"]}, follow_redirects=False
    )
    assert r.status_code == 403
    csrf = world.user_a.headers["X-CSRF-Token"]
    r = world.client.post(
        "/logout",
        data={"csrf_token": csrf},
        headers={"Cookie": world.user_a.headers["Cookie"]},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert world.user_a.get("/api/auth/me").status_code == 401


def test_first_admin_through_the_setup_form_only_once(client: TestClient) -> None:
    token = _form_csrf(client, "/setup")
    r = client.post("/setup", data={"email": "root@msp.example", "password": "short"} | {"csrf_token": token})
    assert r.status_code == 422  # the form again, the error next to the password field
    assert 'id="password-error"' in r.text and "At least 10 characters" in r.text
    r = client.post(
        "/setup",
        data={"email": "root@msp.example", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert login(client, "root@msp.example").info["is_admin"] is True
    assert client.get("/setup").status_code == 404
    client.cookies.set("e3_csrf", token)
    r = client.post("/setup", data={"email": "evil@x.example", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 404
    r = client.post("/api/auth/login", json={"email": "evil@x.example", "password": PASSWORD})
    assert r.status_code == 401
