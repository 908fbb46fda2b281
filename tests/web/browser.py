"""The real server (uvicorn in a thread, SQLite in a temporary directory) for the dashboard's
browser tests; the ``browser`` fixture itself is the plugin ``tests/plugins/chromium.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from e3backup.server import Settings, create_app
from tests.server.conftest import ADMIN_EMAIL, PASSWORD, SECRET_KEY

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    app: Any
    agents: dict[str, httpx.Client]  # hostname -> a client with that agent's token
    tenants: dict[str, int]
    data: Path = Path()  # the server's data directory; repositories under data/repos are browsable

    def agent_call(self, host: str, call: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.agents[host].post(f"/api/agent/{call}", json=body or {})
        assert r.status_code == 200, (call, r.status_code, r.text)
        return dict(r.json())


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Admin ops@, tenant Acme (alice@, agent acme-pc with reported disks), tenant Globex (bob@,
    agent gx-srv) and tenant Initech (peter@, no agent yet)."""
    from e3backup.server.services import users

    data = tmp_path_factory.mktemp("web-server")
    port = _free_port()
    settings = Settings(
        data_dir=data,
        listen=f"127.0.0.1:{port}",
        secret_key=SECRET_KEY,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        scheduler_enabled=False,
        disk_list_timeout_seconds=1.0,
        command_poll_interval_seconds=0.1,
        browse_local_roots=[data / "repos"],
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    state = app.state.e3
    tokens: dict[str, str] = {}
    tenants: dict[str, int] = {}
    with state.sessions() as s:
        now = state.clock.now()
        users.create_user(s, state.passwords, now, ADMIN_EMAIL, PASSWORD, True, None)
        for name, email in (
            ("Acme", "alice@acme.example"),
            ("Globex", "bob@globex.example"),
            ("Initech", "peter@initech.example"),
        ):
            tenant = users.create_tenant(s, name, now)
            users.create_user(s, state.passwords, now, email, PASSWORD, False, tenant.id)
            tokens[name] = users.rotate_enrollment_token(tenant)
            tenants[name] = tenant.id
        s.commit()
    agents: dict[str, httpx.Client] = {}
    for tenant, host, os_name in (("Acme", "acme-pc", "windows"), ("Globex", "gx-srv", "linux")):
        r = httpx.post(
            f"{url}/api/agent/enroll",
            json={
                "enrollment_token": tokens[tenant],
                "hostname": host,
                "os": os_name,
                "os_version": "11 Pro",
                "agent_version": "0.1.0",
            },
        )
        assert r.status_code == 201, r.text
        agents[host] = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {r.json()['agent_token']}"})
    live = LiveServer(url, app, agents, tenants, data)
    live.agent_call("acme-pc", "report_disks", DISKS)
    try:
        yield live
    finally:
        for c in agents.values():
            c.close()
        server.should_exit = True
        thread.join(15)


DISKS: dict[str, Any] = {
    "disks": [
        {
            "path": "\\\\.\\PhysicalDrive0",
            "model": "Samsung SSD 970 EVO",
            "size_bytes": 500 << 30,
            "partition_style": "gpt",
            "volumes": [{"path": "C:", "label": "System", "filesystem": "NTFS", "size_bytes": 499 << 30}],
        }
    ],
    "volumes": [],
    "restore_roots": ["D:\\Restore"],
}


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, email: str, next_url: str = "/") -> None:
    """Sign in with the keyboard only: type, Tab, type, Enter."""
    page.goto(f"{base}{next_url}")
    page.get_by_label("Email").focus()
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda u: "/login" not in u)


def unlabelled_controls(page: Any) -> list[str]:
    """Form controls without an accessible name, from Chromium's accessibility tree."""
    cdp = page.context.new_cdp_session(page)
    tree = cdp.send("Accessibility.getFullAXTree")["nodes"]
    cdp.detach()
    roles = {"textbox", "combobox", "checkbox", "radio", "spinbutton", "searchbox", "listbox", "button"}
    missing = []
    for node in tree:
        role = (node.get("role") or {}).get("value")
        if role in roles and not node.get("ignored"):
            name = (node.get("name") or {}).get("value", "")
            if not str(name).strip():
                missing.append(f"{role} (node {node.get('backendDOMNodeId')})")
    return missing
