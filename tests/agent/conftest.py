"""The agent against the real server app in-process (SQLite in tmp, ASGI through TestClient).

``Harness`` gives an admin who creates jobs and commands through the user API, an enrolled
agent (``make_agent``) whose transport can be cut (``FlakyTransport``) or tampered with, and
helpers that wait on real conditions with bounded polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from e3backup.agent.client import ServerClient
from e3backup.agent.config import AgentConfig
from e3backup.agent.disks import LsblkInventory
from e3backup.agent.runner import Agent
from e3backup.agent.transport import HttpxTransport, Response, TransportError
from e3backup.server import create_app
from tests.conftest import FAST_KDF
from tests.server.conftest import PASSWORD, login, make_admin, make_settings

RECORDINGS = Path(__file__).parent / "recordings"
REPO_PASSWORD = "repo-PASSWORD-never-in-logs-0815"


class FlakyTransport:
    """A transport the test can cut (``down``) and tamper with (``rewrite`` of answers)."""

    def __init__(self, inner: HttpxTransport) -> None:
        self.inner = inner
        self.down = False
        self.rewrite: Callable[[str, Any], Any] | None = None
        self.calls: list[str] = []

    def request(self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None) -> Response:
        self.calls.append(path)
        if self.down:
            raise TransportError(f"{method} {path}: ConnectError: [Errno 111] Connection refused")
        r = self.inner.request(method, path, json=json, headers=headers, params=params)
        if self.rewrite is not None and r.status < 400:
            return Response(r.status, self.rewrite(path, r.body))
        return r

    def download(self, path: str, dest: Path, headers: dict[str, str] | None = None) -> None:
        if self.down:
            raise TransportError(f"GET {path}: ConnectError: [Errno 111] Connection refused")
        self.inner.download(path, dest, headers)

    def close(self) -> None:
        pass


def _thread_stacks() -> str:
    """Every thread's stack: what a timed-out wait was stuck behind, in the failure report."""
    import sys
    import threading
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- thread {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame))}"
        for ident, frame in sys._current_frames().items()
    )


@dataclass
class Harness:
    client: TestClient
    tmp: Path
    enrollment_token: str
    admin_headers: dict[str, str]
    agents: list[Agent] = field(default_factory=list)

    def api(self, method: str, url: str, **kw: Any) -> httpx.Response:
        self.client.cookies.clear()
        r = self.client.request(method, url, headers=self.admin_headers, **kw)
        assert r.status_code < 400, f"{method} {url}: {r.status_code} {r.text}"
        return r

    def make_agent(self, name: str = "agent", **config: Any) -> tuple[Agent, FlakyTransport]:
        transport = FlakyTransport(HttpxTransport(self.client))
        answer = ServerClient(transport).enroll(self.enrollment_token, f"host-{name}", "linux")
        values: dict[str, Any] = {
            "server_url": "http://testserver",
            "agent_id": answer.agent_id,
            "agent_token": answer.agent_token,
            "state_dir": str(self.tmp / name / "state"),
            "poll_interval_seconds": 0.05,
            "command_interval_seconds": 0.05,
            "disk_report_interval_seconds": 3600,
            "progress_interval_seconds": 0.2,
            "restore_roots": [str(self.tmp / "restores")],
            "local_destination_roots": [str(self.tmp)],
        }
        values.update(config)
        lsblk = (RECORDINGS / "lsblk.json").read_text()
        agent = Agent(AgentConfig(**values), transport, kdf=FAST_KDF, client_backoff=0.0, delivery_retry=0.05,
                      inventory=LsblkInventory(lambda: lsblk), snapshot_cleanup=lambda: [])
        self.agents.append(agent)
        return agent, transport

    def files_job(self, agent: Agent, source: Path, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": f"files {source.name}",
            "engine": "files",
            "agent_id": agent.config.agent_id,
            "source_path": str(source),
            "destination": {"type": "local", "path": str(self.tmp / "repo"), "repository_password": REPO_PASSWORD},
        }
        body.update(overrides)
        return dict(self.api("POST", "/api/jobs", json=body).json())

    def run_job(self, job_id: int) -> int:
        return int(self.api("POST", f"/api/jobs/{job_id}/run").json()["id"])

    def run(self, run_id: int) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/runs/{run_id}").json())

    def events(self, run_id: int) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/api/runs/{run_id}/events", params={"limit": 1000}).json())

    def codes(self, run_id: int) -> list[str]:
        return [e["code"] for e in self.events(run_id)]

    def command(self, agent: Agent, type_: str, job_id: int, **payload: Any) -> dict[str, Any]:
        body = {"type": type_, "job_id": job_id, "payload": payload}
        return dict(self.api("POST", f"/api/agents/{agent.config.agent_id}/commands", json=body).json())

    def wait_for(self, what: Callable[[], Any], timeout: float = 30.0, message: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got = what()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {message}\n{_thread_stacks()}")
            time.sleep(0.02)  # poll interval of a bounded wait, not a timing assumption

    def finish(self, agent: Agent, run_id: int, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the agent is idle and the run's final status reached the server."""
        assert agent.wait_idle(timeout)
        agent.outbox.flush(agent.client)
        run = self.run(run_id)
        assert run["status"] not in ("queued", "running"), run
        return run


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    app = create_app(make_settings(tmp_path / "server", f"sqlite:///{tmp_path / 'server.db'}"))
    with TestClient(app) as client:
        make_admin(app)
        admin = login(client, "admin@msp.example", PASSWORD)
        client.cookies.clear()
        r = client.post("/api/tenants", json={"name": "Acme"}, headers=admin.headers)
        assert r.status_code == 201, r.text
        tenant = r.json()
        client.cookies.clear()
        r = client.post(f"/api/tenants/{tenant['id']}/enrollment-token", headers=admin.headers)
        assert r.status_code in (200, 201), r.text
        token = r.json().get("enrollment_token") or r.json().get("token")
        h = Harness(client, tmp_path, token, admin.headers)
        (tmp_path / "restores").mkdir()
        try:
            yield h
        finally:
            for a in h.agents:
                a._stop.set()
                a.stop(timeout=30)
