"""TLS, reverse proxies, cookies and security headers.

- ``--tls-cert/--tls-key``: the server speaks HTTPS itself; every cookie is ``Secure`` and HSTS
  is sent. ``--cookie-secure`` forces ``Secure`` on plain HTTP (TLS ends at a proxy).
- ``--proxy-headers`` with ``--forwarded-allow-ips``: the client address (for rate limits) and
  scheme come from ``X-Forwarded-For``/``-Proto``, but only when a trusted proxy sends them.
- Every response has CSP, ``frame-ancestors 'none'``, ``nosniff``, a referrer policy, and
  ``no-store`` unless it is a static file; ``/docs`` and ``/redoc`` (CDN scripts) are off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from e3backup.cli.server_cmd import server
from e3backup.server.db import upgrade
from e3backup.server.security.headers import CSP
from tests.plugins.tls import self_signed_cert
from tests.server.conftest import ADMIN_EMAIL, PASSWORD, World, make_admin
from tests.server.live import serve_in_thread


def _cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def _secure(cookie: str) -> bool:
    return "secure" in [part.split("=")[0].strip().lower() for part in cookie.split(";")[1:]]


def _launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    """Run ``e3backup server ARGS`` with uvicorn.run captured: the app and what uvicorn got."""
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kw: Any) -> None:
        seen.update(app=app, **kw)

    monkeypatch.setattr("uvicorn.run", fake_run)
    r = CliRunner().invoke(server, ["--data-dir", str(tmp_path / "data"), *args])
    assert r.exit_code == 0, r.output
    upgrade(seen["app"].state.e3.engine)  # what the app's start does
    return seen


def _login(client: httpx.Client | TestClient, **kw: Any) -> httpx.Response:
    r = client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}, **kw)
    assert r.status_code == 200, r.text
    return r


def test_tls_from_the_command_line_serves_https_with_secure_cookies_and_hsts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_cert(tmp_path / "tls")
    seen = _launch(tmp_path, monkeypatch, "--tls-cert", str(cert), "--tls-key", str(key))
    assert (seen["ssl_certfile"], seen["ssl_keyfile"]) == (cert, key)
    app = seen["app"]
    with serve_in_thread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as url:
        make_admin(app)
        with httpx.Client(base_url=url, verify=str(cert)) as c:
            page = c.get("/login")
            r = _login(c)
    assert url.startswith("https://")
    assert _cookies(page) and _cookies(r)
    assert all(_secure(cookie) for cookie in _cookies(page) + _cookies(r))
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_a_key_without_a_certificate_is_refused(tmp_path: Path) -> None:
    _cert, key = self_signed_cert(tmp_path / "tls")
    r = CliRunner().invoke(server, ["--data-dir", str(tmp_path / "d"), "--tls-key", str(key)])
    assert r.exit_code == 2 and "certificate and a key" in r.output


def test_cookie_secure_marks_every_cookie_on_plain_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _launch(tmp_path, monkeypatch, "--cookie-secure")["app"]
    make_admin(app)
    with TestClient(app) as c:
        page = c.get("/login")
        r = _login(c)
        c.cookies.clear()
        csrf = r.json()["csrf_token"]
        switch = c.post(
            "/tenant",
            data={"tenant_id": "", "csrf_token": csrf},
            headers={"Cookie": f"e3_session={r.cookies['e3_session']}", "Accept": "text/html"},
            follow_redirects=False,
        )
    cookies = _cookies(page) + _cookies(r) + _cookies(switch)
    assert {c.split("=")[0] for c in cookies} >= {"e3_csrf", "e3_session", "e3_tenant"}
    assert all(_secure(cookie) for cookie in cookies), cookies
    assert "strict-transport-security" not in r.headers  # HSTS only over HTTPS


def test_without_flags_cookies_are_not_secure_on_plain_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _launch(tmp_path, monkeypatch)["app"]
    make_admin(app)
    with TestClient(app) as c:
        r = _login(c, headers={"X-Forwarded-Proto": "https"})  # not trusted: no proxy mode
    assert not any(_secure(cookie) for cookie in _cookies(r))


def test_proxy_headers_give_each_client_its_own_rate_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a proxy every client shares its address; with --proxy-headers the forwarded
    address counts, so one client's failures do not lock another out."""
    app = _launch(tmp_path, monkeypatch, "--proxy-headers", "--forwarded-allow-ips", "10.0.0.5")["app"]
    make_admin(app)
    proxy = TestClient(app, client=("10.0.0.5", 40000))
    attacker = {"X-Forwarded-For": "198.51.100.66"}
    for _ in range(5):
        r = proxy.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": "guess"}, headers=attacker)
        assert r.status_code == 401
    right = {"email": ADMIN_EMAIL, "password": PASSWORD}
    assert proxy.post("/api/auth/login", json=right, headers=attacker).status_code == 429
    r = _login(proxy, headers={"X-Forwarded-For": "203.0.113.10", "X-Forwarded-Proto": "https"})
    assert all(_secure(cookie) for cookie in _cookies(r))  # the proxy said the client used HTTPS
    assert "strict-transport-security" in r.headers


def test_forwarded_headers_from_an_untrusted_address_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _launch(tmp_path, monkeypatch, "--proxy-headers", "--forwarded-allow-ips", "10.0.0.5")["app"]
    make_admin(app)
    direct = TestClient(app, client=("198.51.100.66", 40000))
    for i in range(5):  # a new forged address each time: all count against the real one
        r = direct.post(
            "/api/auth/login",
            json={"email": ADMIN_EMAIL, "password": "guess"},
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
        )
        assert r.status_code == 401
    r = direct.post(
        "/api/auth/login",
        json={"email": ADMIN_EMAIL, "password": PASSWORD},
        headers={"X-Forwarded-For": "192.0.2.99", "X-Forwarded-Proto": "https"},
    )
    assert r.status_code == 429


def test_without_proxy_mode_forwarded_addresses_are_ignored(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    for i in range(5):
        r = client.post(
            "/api/auth/login",
            json={"email": ADMIN_EMAIL, "password": "guess"},
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
        )
        assert r.status_code == 401
    r = client.post(
        "/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}, headers={"X-Forwarded-For": "192.0.2.9"}
    )
    assert r.status_code == 429


def test_forwarded_allow_ips_needs_proxy_headers(tmp_path: Path) -> None:
    r = CliRunner().invoke(server, ["--data-dir", str(tmp_path), "--forwarded-allow-ips", "10.0.0.5"])
    assert r.exit_code == 2 and "--proxy-headers" in r.output


def test_security_headers_on_pages_api_and_static(world: World) -> None:
    html = {"Accept": "text/html"}
    responses = {
        "page": world.user_a.get("/", headers=html),
        "login": world.client.get("/login"),
        "api": world.user_a.get("/api/jobs"),
        "anonymous api": world.client.get("/api/jobs"),
        "error page": world.user_a.get("/jobs/999999", headers=html),
        "static": world.client.get("/static/app.js"),
    }
    for name, r in responses.items():
        assert r.headers["content-security-policy"] == CSP, name
        assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert r.headers["x-content-type-options"] == "nosniff", name
        assert r.headers["x-frame-options"] == "DENY", name
        assert r.headers["referrer-policy"] == "same-origin", name
        assert "strict-transport-security" not in r.headers, name  # plain HTTP here
        if name != "static":
            assert r.headers["cache-control"] == "no-store", name
    assert "no-store" not in responses["static"].headers.get("cache-control", "")


def test_docs_pages_that_load_cdn_scripts_are_off(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200


def test_settings_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _launch(tmp_path, monkeypatch, "--proxy-headers")["app"]
    settings = app.state.e3.settings
    assert settings.proxy_headers and settings.forwarded_allow_ips == "127.0.0.1"
    assert not settings.cookie_secure and not settings.tls


def test_body_limits_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from e3backup.server.services import users

    app = _launch(tmp_path, monkeypatch, "--max-body-bytes", "4096", "--max-agent-body-bytes", "65536")["app"]
    state = app.state.e3
    with state.sessions() as s:
        token = users.rotate_enrollment_token(users.create_tenant(s, "Acme", state.clock.now()), state.clock.now())
        s.commit()
    json_headers = {"Content-Type": "application/json"}
    with TestClient(app) as c:
        assert c.post("/api/auth/login", content=b" " * 5000, headers=json_headers).status_code == 413
        assert c.post("/api/auth/login", content=b" " * 3000, headers=json_headers).status_code == 422
        enrolled = c.post("/api/agent/enroll", json={"enrollment_token": token, "hostname": "h", "os": "linux"})
        agent = {**json_headers, "Authorization": f"Bearer {enrolled.json()['agent_token']}"}
        body = b'{"run_id": 1, "events": []' + b" " * 20_000 + b"}"
        assert c.post("/api/agent/push_events", content=body, headers=json_headers).status_code == 413
        assert c.post("/api/agent/push_events", content=body, headers=agent).status_code == 404  # size ok
        big = b'{"run_id": 1, "events": []' + b" " * 70_000 + b"}"
        assert c.post("/api/agent/push_events", content=big, headers=agent).status_code == 413
    r = CliRunner().invoke(server, ["--data-dir", str(tmp_path / "d"), "--max-body-bytes", "10"])
    assert r.exit_code == 2 and "--max-body-bytes" in r.output
