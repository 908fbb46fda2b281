"""/metrics (Prometheus text format) and /readyz, on SQLite and PostgreSQL.

The figures are checked against what the test did through the API: agents enrolled and online,
runs by status, the duration and bytes of a finished backup, the latency of the routes called.
Loopback callers need no credentials; others need the operator's bearer token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from e3backup.server import create_app
from e3backup.server.db import make_engine, upgrade
from tests.server.conftest import FakeClock, World, make_settings

TOKEN = "metrics-token-for-tests-0123456789"


def scrape(app: FastAPI, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        r = local.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_count_the_fleet_and_time_the_routes(app: FastAPI, world: World, clock: FakeClock) -> None:
    job = world.job()
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
    assert world.agent_a.post("/api/agent/next_run").json()["run"]["run_id"] == run["id"]
    clock.advance(seconds=120)
    r = world.agent_a.post("/api/agent/update_run", json={
        "run_id": run["id"], "status": "success", "bytes_processed": 5_000_000, "bytes_uploaded": 1_234_567})
    assert r.status_code == 200, r.text
    m = scrape(app)
    assert m[("e3backup_agents", (("state", "enrolled"),))] == 2
    assert m[("e3backup_agents", (("state", "online"),))] == 1  # only agent A has called in
    assert m[("e3backup_runs", (("kind", "backup"), ("status", "success")))] == 1
    assert m[("e3backup_runs", (("kind", "backup"), ("status", "queued")))] == 0
    assert m[("e3backup_run_duration_seconds_bucket", (("kind", "backup"), ("le", "60.0")))] == 0
    assert m[("e3backup_run_duration_seconds_bucket", (("kind", "backup"), ("le", "300.0")))] == 1
    assert m[("e3backup_run_duration_seconds_sum", (("kind", "backup"),))] == pytest.approx(120)
    assert m[("e3backup_backup_read_bytes_total", ())] == 5_000_000
    assert m[("e3backup_backup_uploaded_bytes_total", ())] == 1_234_567
    timed = ("e3backup_http_request_duration_seconds_count", (("method", "POST"), ("route", "/api/agent/next_run")))
    assert m[timed] == 1
    assert m[("e3backup_scheduler_leader", ())] == 0  # the tests' app runs no scheduler
    assert m[("e3backup_db_pool_connections", (("state", "checked_out"),))] >= 0


def test_metrics_outside_loopback_need_the_token(app: FastAPI, client: TestClient) -> None:
    r = client.get("/metrics")  # the fixture's client is 203.0.113.7
    assert r.status_code == 403
    assert "loopback" in r.json()["detail"]


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": TOKEN}], indirect=True)
def test_metrics_token_lets_a_remote_scraper_in(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert "e3backup_agents" in r.text


def test_readyz_says_database_and_migrations(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["migrations"] == "current"
    assert body["scheduler_leader"] is False


def test_readyz_is_503_while_migrations_are_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    upgrade(engine, "0010")
    engine.dispose()
    app = create_app(make_settings(tmp_path / "data", url))
    r = TestClient(app).get("/readyz")  # no lifespan: the app has not migrated the database
    assert r.status_code == 503
    assert r.json()["migrations"] == "behind"
    assert r.json()["status"] == "not ready"
