"""The console's web UI answers loopback only and refuses forms without its CSRF cookie: another
site open in the rescue machine's browser (or a DNS-rebinding page) cannot drive it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from e3backup.agent.transport import HttpxTransport
from e3backup.recovery.client import RecoveryClient
from e3backup.recovery.console import RecoveryConsole
from e3backup.recovery.web import create_console_app


def test_loopback_hosts_only_and_forms_need_the_csrf_cookie() -> None:
    console = RecoveryConsole(RecoveryClient(HttpxTransport.network("http://127.0.0.1:9")))
    try:
        app = create_console_app(console)
        with TestClient(app, base_url="http://attacker.example") as c:
            assert c.get("/").status_code == 421
        with TestClient(app, base_url="http://127.0.0.1:8740") as c:
            page = c.get("/")
            assert page.status_code == 200 and "Recovery code" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]
            token = c.cookies["e3rc_csrf"]
            c.cookies.clear()
            r = c.post("/sign-in", data={"code": "AAAA-AAAA-AAAA", "csrf_token": token})
            assert r.status_code == 403  # the form's token without the cookie: another site's post
            assert console.status().phase.value == "signed_out"
            c.cookies.set("e3rc_csrf", token)
            r = c.post("/sign-in", data={"code": "AAAA-AAAA-AAAA", "csrf_token": token})
            assert r.status_code == 401 and "server unreachable" in r.text  # it did try: the server is down
    finally:
        console.close()
