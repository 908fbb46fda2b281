"""Users in the dashboard and the optional TOTP second factor (#25): invite, disable, reset the
password, change the role; set up two-factor, sign in with and without the code, reset by an
administrator; every step in the audit log."""

from __future__ import annotations

import pyotp
from fastapi.testclient import TestClient

from tests.server.conftest import PASSWORD, World, login
from tests.web.conftest import HTML, form_post, page, text_of


def _login(client: TestClient, email: str, code: str | None = None, password: str = PASSWORD) -> tuple[int, str]:
    client.cookies.clear()
    body = {"email": email, "password": password, **({"totp_code": code} if code else {})}
    r = client.post("/api/auth/login", json=body)
    return r.status_code, r.json().get("detail", "")


def test_two_factor_setup_sign_in_and_admin_reset(world: World, client: TestClient) -> None:
    setup = world.user_a.post("/api/auth/totp/setup").json()
    assert setup["otpauth_uri"].startswith("otpauth://totp/e3backup:alice%40acme.example")
    totp = pyotp.TOTP(setup["secret"])
    assert world.user_a.post("/api/auth/totp/enable", json={"code": "000000"}).status_code == 422
    assert _login(client, "alice@acme.example")[0] == 200  # not in force before a code was checked
    assert world.user_a.post("/api/auth/totp/enable", json={"code": totp.now()}).status_code == 204

    assert _login(client, "alice@acme.example") == (401, "two-factor code required")
    wrong = "123456" if totp.now() != "123456" else "654321"
    assert _login(client, "alice@acme.example", wrong) == (401, "two-factor code wrong")
    assert _login(client, "alice@acme.example", totp.now())[0] == 200
    assert _login(client, "alice@acme.example", totp.now(), password="not the password")[0] == 401
    failed = world.admin.get("/api/audit", params={"action": "auth.login_failed"}).json()["items"]
    assert [e["details"].get("second_factor") for e in failed][:3] == [None, "wrong", "missing"]

    assert world.user_a.get("/api/auth/whoami").json()["totp_enabled"] is True
    r = world.admin.patch(f"/api/users/{world.user_a.id}", json={"reset_totp": True})
    assert r.status_code == 200 and r.json()["totp_enabled"] is False
    assert _login(client, "alice@acme.example")[0] == 200


def test_the_login_form_and_the_account_page(world: World, client: TestClient) -> None:
    html = form_post(world.user_b, "/account/totp", {"action": "setup"}).text
    secret = html.split('id="totp-secret">')[1].split("<")[0]
    r = form_post(world.user_b, "/account/totp", {"action": "enable", "code": "000000" if pyotp.TOTP(secret).now()
                                                  != "000000" else "111111"})
    assert r.status_code == 422 and "Wrong code" in r.text
    assert form_post(world.user_b, "/account/totp", {"action": "enable", "code": pyotp.TOTP(secret).now()}
                     ).status_code == 303
    assert "Two-factor On" in text_of(page(world.user_b, "/account"))
    client.cookies.clear()
    login_page = client.get("/login")
    token = client.cookies.get("e3_csrf")
    r = client.post("/login", data={"email": "bob@globex.example", "password": PASSWORD, "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 401 and "6-digit code" in r.text and 'id="totp_code"' in login_page.text
    r = client.post("/login", data={"email": "bob@globex.example", "password": PASSWORD, "csrf_token": token,
                                    "totp_code": pyotp.TOTP(secret).now()}, follow_redirects=False)
    assert r.status_code == 303


def test_users_page_invites_disables_resets_and_sets_roles(world: World) -> None:
    r = form_post(world.user_a, "/users", {"email": "op@acme.example", "password": "short", "role": "operator"})
    assert r.status_code == 422 and "Not added" in r.text
    r = form_post(world.user_a, "/users", {"email": "op@acme.example", "password": "operator password 1",
                                           "role": "operator"})
    assert r.status_code == 303
    listed = text_of(page(world.user_a, "/users"))
    assert "op@acme.example operator Active" in listed and "bob@globex.example" not in listed
    op = login(world.client, "op@acme.example", "operator password 1")
    assert op.get("/users", headers=HTML).status_code == 403
    assert form_post(world.user_a, f"/users/{op.id}", {"action": "role", "role": "read_only"}).status_code == 303
    assert form_post(world.user_a, f"/users/{op.id}", {"action": "password", "password": "a new password 22"}
                     ).status_code == 303
    assert form_post(world.user_a, f"/users/{op.id}", {"action": "disable"}).status_code == 303
    assert "op@acme.example read-only Disabled" in text_of(page(world.user_a, "/users"))
    assert form_post(world.user_b, f"/users/{op.id}", {"action": "enable"}).status_code == 404  # another tenant
    actions = [e["action"] for e in world.user_a.get("/api/audit", params={"action": "user."}).json()["items"]]
    assert actions == ["user.update", "user.update", "user.update", "user.create"]
