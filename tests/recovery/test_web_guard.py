"""The console's web UI answers loopback only and refuses forms without its CSRF cookie: another
site open in the rescue machine's browser (or a DNS-rebinding page) cannot drive it."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from e3backup.agent.transport import HttpxTransport
from e3backup.recovery.client import RecoveryClient
from e3backup.recovery.console import RecoveryConsole
from e3backup.recovery.web import create_console_app, serve


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


class _Connected(Exception):
    pass


def test_the_printed_address_takes_connections_before_the_server_loop_runs() -> None:
    # a browser opened on the printed address at once was refused now and then (CI): the socket
    # was bound but not listening until uvicorn's loop started
    console = RecoveryConsole(RecoveryClient(HttpxTransport.network("http://127.0.0.1:9")))

    def connect(port: int) -> None:  # called once the address is printed, before the loop runs
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            raise _Connected

    try:
        with pytest.raises(_Connected):
            serve(console, "127.0.0.1:0", on_ready=connect)
    finally:
        console.close()
