"""Recovery sessions: scoped tokens and the sliding expiry, on a controlled clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.server.conftest import START, Actor, FakeClock, World

ACTIVITY = ["update_run", "push_events", "get_run_status", "get_run_events", "poll_cancel"]


def _session(world: World, owner: Actor | None = None, storage_mode: str = "direct") -> tuple[int, Actor]:
    owner = owner or world.user_a
    job = world.job(
        owner=owner, engine="disk_image", disk_source_volume="\\\\.\\PhysicalDrive0", source_path="",
        storage_mode=storage_mode,
    )
    r = owner.post(
        "/api/recovery/sessions", json={"job_id": job["id"], "snapshot_id": "snap-1", "target_disk": "0"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["session_token"].startswith("e3r_")
    assert datetime.fromisoformat(
        body["session_expires_at"]
    ) == world.client.app.state.e3.clock.now() + timedelta(hours=6)
    return body["run_id"], Actor(world.client, {"Authorization": f"Bearer {body['session_token']}"})


def _call(console: Actor, endpoint: str, run_id: int) -> Any:
    body: dict[str, Any] = {"run_id": run_id}
    if endpoint == "update_run":
        body["progress_pct"] = 10
    if endpoint == "push_events":
        body["events"] = [{"seq": 1, "code": "RESTORE_PROGRESS", "message": "10%"}]
    return console.post(f"/api/recovery/{endpoint}", json=body)


def _expiry(console: Actor, run_id: int) -> datetime:
    r = console.post("/api/recovery/refresh_session", json={"run_id": run_id})
    assert r.status_code == 200, r.text
    return datetime.fromisoformat(r.json()["session_expires_at"])


def test_get_run_gives_the_restore_with_destination(world: World) -> None:
    run_id, console = _session(world)
    r = console.post("/api/recovery/get_run", json={"run_id": run_id})
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    assert (run["kind"], run["engine"], run["restore"]["snapshot_id"]) == ("restore", "disk_image", "snap-1")
    assert run["destination"]["secret_access_key"] == "s3-SECRET-do-not-leak-4711"


@pytest.mark.parametrize("settings_overrides", [{"session_hours": 1000.0}], indirect=True)
def test_every_activity_call_slides_expiry_only_near_the_end(world: World, clock: FakeClock) -> None:
    for endpoint in ACTIVITY:
        created = clock.now()
        run_id, console = _session(world)
        assert _expiry(console, run_id) == created + timedelta(hours=6)
        clock.advance(hours=1)
        assert _call(console, endpoint, run_id).status_code == 200
        clock.advance(hours=4)  # 60 minutes left: not extended (no write)
        assert _call(console, endpoint, run_id).status_code == 200
        assert _expiry(console, run_id) == created + timedelta(hours=6), endpoint
        clock.advance(minutes=31)  # 29 minutes left: within the 30-minute threshold
        assert _call(console, endpoint, run_id).status_code == 200
        assert _expiry(console, run_id) == clock.now() + timedelta(hours=6), endpoint


def test_refresh_session_before_threshold_keeps_expiry(world: World, clock: FakeClock) -> None:
    run_id, console = _session(world)
    clock.advance(hours=2)
    assert _expiry(console, run_id) == START + timedelta(hours=6)
    clock.advance(hours=3, minutes=45)  # 15 minutes left
    assert _expiry(console, run_id) == clock.now() + timedelta(hours=6)


def test_expired_session_is_refused(world: World, clock: FakeClock) -> None:
    run_id, console = _session(world)
    clock.advance(hours=6)
    for endpoint in [*ACTIVITY, "refresh_session", "get_run"]:
        assert _call(console, endpoint, run_id).status_code == 401, endpoint


def test_long_restore_stays_alive_with_activity(world: World, clock: FakeClock) -> None:
    run_id, console = _session(world)
    for _ in range(30):  # 14.5 h, more than twice the initial 6 h, polling every 29 minutes
        clock.advance(minutes=29)
        assert _call(console, "get_run_status", run_id).status_code == 200
    assert _expiry(console, run_id) > clock.now()


def test_session_is_scoped_to_its_run(world: World) -> None:
    run_1, console_1 = _session(world)
    run_2, _console_2 = _session(world)
    r = console_1.post("/api/recovery/get_run_status", json={"run_id": run_2})
    assert r.status_code == 403
    r = console_1.post("/api/recovery/refresh_session", json={"run_id": run_2})
    assert r.status_code == 403
    assert console_1.post("/api/recovery/get_run_status", json={"run_id": run_1}).status_code == 200
    forged = Actor(world.client, {"Authorization": "Bearer e3r_forged"})
    assert forged.post("/api/recovery/get_run_status", json={"run_id": run_1}).status_code == 401
    assert world.agent_a.post("/api/recovery/get_run_status", json={"run_id": run_1}).status_code == 401
    r = console_1.post("/api/recovery/get_run_status", json={"run": 1})
    assert r.status_code == 422
    assert "run_id" in r.json()["detail"]


def test_console_reports_progress_events_and_sees_cancel(world: World) -> None:
    run_id, console = _session(world)
    r = console.post(
        "/api/recovery/update_run", json={"run_id": run_id, "status": "running", "progress_pct": 5}
    )
    assert r.status_code == 200
    events = [{"seq": 1, "code": "REPOSITORY_OPENED"}, {"seq": 2, "code": "DISK_IMAGE_STREAM_START"}]
    for _ in range(2):
        console.post("/api/recovery/push_events", json={"run_id": run_id, "events": events})
    got = console.post("/api/recovery/get_run_events", json={"run_id": run_id}).json()["events"]
    assert [e["code"] for e in got] == ["REPOSITORY_OPENED", "DISK_IMAGE_STREAM_START"]
    assert console.post("/api/recovery/poll_cancel", json={"run_id": run_id}).json() == {
        "cancel_requested": False
    }
    assert world.user_a.post(f"/api/runs/{run_id}/cancel").status_code == 200
    assert console.post("/api/recovery/poll_cancel", json={"run_id": run_id}).json() == {
        "cancel_requested": True
    }
    status = console.post("/api/recovery/get_run_status", json={"run_id": run_id}).json()
    assert (status["status"], status["progress_pct"], status["cancel_requested"]) == ("running", 5.0, True)


def test_only_visible_jobs_get_recovery_sessions(world: World) -> None:
    job_b = world.job(owner=world.user_b)
    r = world.user_a.post("/api/recovery/sessions", json={"job_id": job_b["id"], "snapshot_id": "s"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "job_id"
    r = world.user_a.post("/api/recovery/sessions", json={"job_id": job_b["id"]})
    assert r.json()["errors"][0]["field"] == "snapshot_id"
    assert (
        world.client.post("/api/recovery/sessions", json={"job_id": 1, "snapshot_id": "s"}).status_code == 401
    )
