"""The agents' polls answered below the framework (``routes/agent_polls.py``): the same answer,
headers and checks as the app's route, and anything unusual left to the app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tests.server.conftest import World
from tests.server.test_metrics import scrape

IGNORED_HEADERS = {"content-length", "date"}


def _job_run(world: World, name: str) -> int:
    job = world.job(name=name, storage_mode="direct")
    r = world.user_a.post(f"/api/jobs/{job['id']}/run")
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _headers(r: Any) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k not in IGNORED_HEADERS}


def test_a_poll_answered_below_the_framework_equals_the_apps_answer(app: FastAPI, world: World) -> None:
    first, second = _job_run(world, "Docs 1"), _job_run(world, "Docs 2")
    assert world.agent_a.post("/api/agent/poll_commands").status_code == 200  # now in the token cache
    # an unknown query parameter: the fast path leaves the call to the app, which ignores it
    by_app = world.agent_a.post("/api/agent/next_run", params={"kind": "backup", "other": "1"}, json={})
    fast = world.agent_a.post("/api/agent/next_run", params={"kind": "backup"}, json={})
    assert by_app.status_code == fast.status_code == 200
    runs = [by_app.json()["run"], fast.json()["run"]]
    assert {r["run_id"] for r in runs} == {first, second}
    for r in runs:
        del r["run_id"], r["job_id"], r["job_name"]
    assert runs[0] == runs[1]
    assert runs[0]["destination"]["secret_access_key"] == "s3-SECRET-do-not-leak-4711"
    assert _headers(by_app) == _headers(fast)
    assert fast.headers["cache-control"] == "no-store" and "content-security-policy" in fast.headers
    idle_app = world.agent_a.post("/api/agent/next_run", params={"other": "1"})
    idle_fast = world.agent_a.post("/api/agent/next_run")
    assert idle_app.content == idle_fast.content == b'{"run":null,"update":null}'
    assert _headers(idle_app) == _headers(idle_fast)


def test_an_unusual_poll_from_a_known_agent_gets_the_apps_answer(app: FastAPI, world: World) -> None:
    assert world.agent_a.post("/api/agent/next_run").status_code == 200  # cached from here on
    r = world.agent_a.post("/api/agent/next_run", json={"agent_version": "x" * 65})
    assert r.status_code == 422 and "agent_version" in r.text
    r = world.agent_a.post("/api/agent/next_run", params={"kind": "nonsense"})
    assert r.status_code == 422 and "kind" in r.text
    r = world.agent_a.post("/api/agent/next_run", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    r = world.agent_a.post("/api/agent/next_run", json={"agent_version": "2.5", "os_version": "Debian 13"})
    assert r.status_code == 200
    agent = world.user_a.get(f"/api/agents/{world.agent_a.id}").json()
    assert (agent["agent_version"], agent["os_version"]) == ("2.5", "Debian 13")  # the heartbeat's fields


def test_polls_are_timed_under_their_route(app: FastAPI, world: World) -> None:
    world.agent_a.post("/api/agent/next_run")
    for _ in range(3):
        assert world.agent_a.post("/api/agent/poll_commands").status_code == 200
    samples = scrape(app)
    key = ("e3backup_http_request_duration_seconds_count", (("method", "POST"), ("route", "/api/agent/poll_commands")))
    assert samples[key] == 3
