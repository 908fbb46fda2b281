"""Request size limits (before parsing), sizes of list and dict fields, and the per-run event cap."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from e3backup.server.db.models import RunEvent
from tests.server.conftest import World

MIB = 1024 * 1024


def _stream(total: int, chunk: int = 256 * 1024) -> Iterator[bytes]:
    """A body sent in chunks without a Content-Length (the limit must count as it streams)."""
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        sent += n
        yield b"x" * n


def _fields(r: object) -> list[str]:
    return [e["field"] for e in r.json()["errors"]]  # type: ignore[attr-defined]


def test_user_bodies_over_the_limit_are_refused_before_parsing(world: World) -> None:
    declared = world.client.post(
        "/api/auth/login", content=b"{" + b" " * (2 * MIB) + b"}", headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413
    assert "larger than 1048576 bytes" in declared.json()["detail"]
    chunked = world.client.post("/api/auth/login", content=_stream(3 * MIB))
    assert chunked.status_code == 413
    form = world.client.post(
        "/login",
        content=_stream(3 * MIB),
        headers={"Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 413
    # a signed-in user gets no more: jobs are small
    job = world.user_a.post("/api/jobs", content=_stream(2 * MIB), headers={"Content-Type": "application/json"})
    assert job.status_code == 413


def test_agents_get_a_larger_limit_only_with_a_known_token(world: World) -> None:
    body = b'{"run_id": 1, "events": [' + b" " * (3 * MIB) + b"]}"
    headers = {"Content-Type": "application/json"}
    anonymous = world.client.post("/api/agent/push_events", content=body, headers=headers)
    assert anonymous.status_code == 413
    forged = world.client.post(
        "/api/agent/push_events", content=body, headers={**headers, "Authorization": "Bearer e3a_forged"}
    )
    assert forged.status_code == 413
    known = world.agent_a.post("/api/agent/push_events", content=body, headers=headers)
    assert known.status_code == 404  # past the size check: run 1 is not this agent's
    streamed = world.agent_a.post("/api/agent/push_events", content=_stream(10 * MIB), headers=headers)
    assert streamed.status_code == 413  # the agent limit (8 MiB) holds as well


def test_list_and_dict_fields_are_bounded(world: World) -> None:
    job = world.job()
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
    world.agent_a.post("/api/agent/next_run")
    big_details = {"events": [{"seq": 1, "code": "X", "details": {"blob": "y" * 40_000}}], "run_id": run["id"]}
    r = world.agent_a.post("/api/agent/push_events", json=big_details)
    assert r.status_code == 422 and _fields(r) == ["events.0.details"], r.text
    many_keys = {"events": [{"seq": 1, "code": "X", "details": {f"k{i}": i for i in range(65)}}], "run_id": run["id"]}
    assert _fields(world.agent_a.post("/api/agent/push_events", json=many_keys)) == ["events.0.details"]
    volumes = [{"path": f"/dev/loop{i}"} for i in range(1025)]
    r = world.agent_a.post("/api/agent/report_disks", json={"volumes": volumes})
    assert r.status_code == 422 and _fields(r) == ["volumes"]
    r = world.agent_a.post(
        "/api/agent/update_run", json={"run_id": run["id"], "disk_manifests_json": {f"d{i}": "a" for i in range(300)}}
    )
    assert _fields(r) == ["disk_manifests_json"]
    r = world.user_a.patch(f"/api/jobs/{job['id']}", json={"source_paths": [f"/p{i}" for i in range(1001)]})
    assert r.status_code == 422 and _fields(r) == ["source_paths"]
    r = world.user_a.post(
        f"/api/agents/{world.agent_a.id}/commands",
        json={"type": "restore", "job_id": job["id"], "payload": {f"k{i}": 1 for i in range(33)}},
    )
    assert _fields(r) == ["payload"]


@pytest.mark.parametrize("settings_overrides", [{"max_events_per_run": 10}], indirect=True)
def test_a_run_keeps_at_most_its_event_cap_and_says_how_many_it_dropped(app: FastAPI, world: World) -> None:
    job = world.job()
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
    world.agent_a.post("/api/agent/next_run")
    batch = [{"seq": i, "code": "REPOSITORY_OPENED"} for i in range(1, 16)]
    r = world.agent_a.post("/api/agent/push_events", json={"run_id": run["id"], "events": batch})
    assert r.status_code == 200
    assert (r.json()["accepted"], r.json()["dropped"]) == (10, 5)
    failure = [
        {"seq": 16, "code": "DISK_IMAGE_FAILED", "message": "disk gone"},
        {"seq": 17, "code": "REPOSITORY_OPENED"},
    ]
    r = world.agent_a.post("/api/agent/push_events", json={"run_id": run["id"], "events": failure})
    assert (r.json()["accepted"], r.json()["dropped"]) == (1, 1)  # the error is still kept
    with app.state.e3.sessions() as s:
        rows = list(s.scalars(select(RunEvent).where(RunEvent.run_id == run["id"]).order_by(RunEvent.id)))
    codes = [row.code for row in rows]
    assert codes.count("REPOSITORY_OPENED") == 10 and "DISK_IMAGE_FAILED" in codes
    capped = [row for row in rows if row.code == "EVENTS_CAPPED"]
    assert len(capped) == 1
    assert capped[0].details == {"limit": 10, "dropped": 6, "by_level": {"info": 6}}
    events = world.user_a.get(f"/api/runs/{run['id']}/events").json()
    assert any(e["code"] == "EVENTS_CAPPED" and "counted" in e["meaning"] for e in events)


def test_malformed_bodies_are_clear_errors(world: World) -> None:
    headers = {"Content-Type": "application/json"}
    for body in (b"[" * 100_000, b'{"email": "a@b.c", "password": ', b"\xff\xfe", b"null", b'{"a": 1e999999}'):
        for r in (
            world.client.post("/api/auth/login", content=body, headers=headers),
            world.agent_a.post("/api/agent/push_events", content=body, headers=headers),
        ):
            # 400 "error parsing the body" (too deeply nested) or 422 (invalid JSON): never a 500
            assert r.status_code in (400, 422), (body[:20], r.status_code, r.text[:200])
            assert r.json()["detail"]
