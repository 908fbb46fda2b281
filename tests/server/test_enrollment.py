"""Enrollment tokens expire and may be limited to a number of agents; ``e3backup agent enroll``
takes the token from a prompt or ``E3BACKUP_ENROLLMENT_TOKEN`` rather than the command line."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml
from click.testing import CliRunner
from fastapi import FastAPI
from sqlalchemy import select

from e3backup.agent.config import load_config
from e3backup.cli.agent_cmds import agent
from e3backup.server import create_app
from e3backup.server.db.models import Agent, Tenant
from e3backup.server.services import users
from tests.server.conftest import FakeClock, World, make_settings
from tests.server.live import serve_in_thread


def _enroll(world: World, token: str, host: str = "h") -> int:
    body = {"enrollment_token": token, "hostname": host, "os": "linux"}
    return world.client.post("/api/agent/enroll", json=body).status_code


def test_a_token_expires(world: World, clock: FakeClock) -> None:
    r = world.user_a.post(f"/api/tenants/{world.tenant_a['id']}/enrollment-token", json={"expires_in_hours": 2})
    assert r.status_code == 201, r.text
    token = r.json()["enrollment_token"]
    assert r.json()["expires_at"].startswith("2026-03-02T12:00")
    assert world.user_a.get(f"/api/tenants/{world.tenant_a['id']}").json()["has_enrollment_token"] is True
    clock.advance(hours=1, minutes=59)
    assert _enroll(world, token, "before") == 201
    clock.advance(minutes=2)
    r = world.client.post("/api/agent/enroll", json={"enrollment_token": token, "hostname": "after", "os": "linux"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert world.user_a.get(f"/api/tenants/{world.tenant_a['id']}").json()["has_enrollment_token"] is False


def test_a_token_expires_after_7_days_by_default(world: World, clock: FakeClock) -> None:
    token = world.user_a.post(f"/api/tenants/{world.tenant_a['id']}/enrollment-token").json()["enrollment_token"]
    clock.advance(days=7, seconds=1)
    assert _enroll(world, token) == 401


def test_a_token_with_a_use_count_enrolls_that_many_agents(world: World) -> None:
    r = world.user_a.post(f"/api/tenants/{world.tenant_a['id']}/enrollment-token", json={"max_uses": 2})
    token = r.json()["enrollment_token"]
    assert r.json()["uses_left"] == 2
    assert [_enroll(world, token, f"h{i}") for i in range(3)] == [201, 201, 401]
    tenant = world.user_a.get(f"/api/tenants/{world.tenant_a['id']}").json()
    assert (tenant["has_enrollment_token"], tenant["enrollment_token_uses_left"]) == (False, None)


def test_parallel_enrollments_cannot_overspend_a_use_count(tmp_path: Path) -> None:
    """20 enrollments at once with a 3-use token on a real server: exactly 3 agents."""
    app = create_app(make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 's.db'}", enroll_attempts=100))
    with serve_in_thread(app) as url:
        state = app.state.e3
        with state.sessions() as s:
            tenant = users.create_tenant(s, "Acme", state.clock.now())
            token = users.rotate_enrollment_token(tenant, state.clock.now(), uses=3)
            s.commit()

        def enroll(i: int) -> int:
            body = {"enrollment_token": token, "hostname": f"h{i}", "os": "linux"}
            return httpx.post(f"{url}/api/agent/enroll", json=body, timeout=60).status_code

        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(enroll, range(20)))
    assert sorted(codes) == [201] * 3 + [401] * 17


def test_old_tokens_expire_after_the_upgrade_too(app: FastAPI, world: World) -> None:
    """The migration gave tokens made before it an expiry (7 days); none lives forever."""
    with app.state.e3.sessions() as s:
        assert all(t.enrollment_token_expires_at is not None for t in s.query(Tenant))


def _token(app: FastAPI) -> str:
    state = app.state.e3
    with state.sessions() as s:
        tenant = s.query(Tenant).one_or_none() or users.create_tenant(s, "Acme", state.clock.now())
        token = users.rotate_enrollment_token(tenant, state.clock.now())
        s.commit()
    return token


def test_enroll_command_asks_for_the_token_or_reads_the_environment(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 's.db'}"))
    with serve_in_thread(app) as url:
        asked = tmp_path / "asked.yaml"
        token = _token(app)
        r = CliRunner().invoke(
            agent, ["enroll", "--server", url, "--config", str(asked), "--name", "asked"], input=token + "\n"
        )
        assert r.exit_code == 0, r.output
        assert "Enrollment token" in r.output and token not in r.output  # asked, not echoed
        assert yaml.safe_load(asked.read_text())["agent_token"].startswith("e3a_")
        from_env = tmp_path / "env.yaml"
        r = CliRunner(env={"E3BACKUP_ENROLLMENT_TOKEN": _token(app)}).invoke(
            agent, ["enroll", "--server", url, "--config", str(from_env), "--name", "env"]
        )
        assert r.exit_code == 0, r.output
        assert "Enrollment token" not in r.output
        flag = tmp_path / "flag.yaml"  # still works, documented as less safe
        r = CliRunner().invoke(agent, [
            "enroll", "--server", url, "--config", str(flag), "--token", _token(app),
            "--allow-source", "/srv/data", "--allow-source", "C:\\Users", "--destination-root", "/srv/repos",
        ])
        assert r.exit_code == 0, r.output
        written = load_config(flag)
        assert written.allowed_sources == ["/srv/data", "C:\\Users"]
        assert written.local_destination_roots == ["/srv/repos"]
        assert load_config(asked).allowed_sources is None  # default: any source
        r = CliRunner().invoke(
            agent, ["enroll", "--server", url, "--config", str(tmp_path / "no.yaml")], input="e3e_wrong\n"
        )
        assert r.exit_code != 0 and "expired" in str(r.exception)
    with app.state.e3.sessions() as s:
        hosts = list(s.scalars(select(Agent.hostname)))
    assert len(hosts) == 3 and {"asked", "env"} <= set(hosts)
