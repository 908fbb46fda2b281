"""Scheduling: the pure ``due_runs`` on fixed times, and ``Scheduler.tick`` on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI

from e3backup.server.scheduler import JobSchedule, Scheduler, due_runs, next_fire
from tests.server.conftest import FakeClock, World

T = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
DAILY = JobSchedule(job_id=7, cron="0 2 * * *", timezone="UTC", next_run_at=T)


def test_not_due_yet() -> None:
    assert due_runs(T - timedelta(seconds=1), [DAILY]) == []


def test_due_once() -> None:
    [due] = due_runs(T + timedelta(minutes=1), [DAILY])
    assert (due.job_id, due.trigger, due.scheduled_for, due.next_run_at) == (
        7,
        "schedule",
        T,
        T + timedelta(days=1),
    )


def test_missed_fire_times_give_one_catchup_run() -> None:
    now = T + timedelta(days=3, hours=5)  # the server was down for three fire times
    [due] = due_runs(now, [DAILY])
    assert due.trigger == "catchup"
    assert due.scheduled_for == T + timedelta(days=3)  # the latest missed time
    assert due.next_run_at == T + timedelta(days=4)


def test_time_zone_and_daylight_saving() -> None:
    # 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer (DST starts 2026-03-29)
    before = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", "Europe/Berlin", before) == datetime(2026, 3, 28, 1, 0, tzinfo=UTC)
    after = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", "Europe/Berlin", after) == datetime(2026, 3, 31, 0, 0, tzinfo=UTC)


def test_several_jobs() -> None:
    hourly = JobSchedule(job_id=8, cron="0 * * * *", timezone="UTC", next_run_at=T + timedelta(hours=1))
    assert [d.job_id for d in due_runs(T + timedelta(minutes=30), [DAILY, hourly])] == [7]
    assert [d.job_id for d in due_runs(T + timedelta(hours=1), [DAILY, hourly])] == [7, 8]


def _scheduler(app: FastAPI) -> Scheduler:
    scheduler: Scheduler = app.state.scheduler
    return scheduler


LONG_SESSIONS = {"session_hours": 1000.0}  # the clock moves days; stay signed in


@pytest.mark.parametrize("settings_overrides", [LONG_SESSIONS], indirect=True)
def test_tick_creates_runs_when_due(app: FastAPI, world: World, clock: FakeClock) -> None:
    job = world.job(schedule={"cron": "0 2 * * *", "timezone": "UTC"})
    assert job["next_run_at"].startswith("2026-03-03T02:00:00")
    world.job(name="off", schedule={"cron": "0 2 * * *"}, enabled=False)
    scheduler = _scheduler(app)
    assert scheduler.tick() == []
    clock.set(datetime(2026, 3, 3, 2, 0, 30, tzinfo=UTC))
    [run] = scheduler.tick()
    assert (run.job_id, run.trigger, run.status) == (job["id"], "schedule", "queued")
    assert scheduler.tick() == []
    runs = world.user_a.get("/api/runs", params={"job_id": job["id"]}).json()
    assert [r["trigger"] for r in runs] == ["schedule"]
    assert world.user_a.get(f"/api/jobs/{job['id']}").json()["next_run_at"].startswith("2026-03-04T02:00:00")
    # finish it, then the server is down for three days: one catch-up run
    got = world.agent_a.post("/api/agent/next_run").json()["run"]
    world.agent_a.post("/api/agent/update_run", json={"run_id": got["run_id"], "status": "success"})
    clock.set(datetime(2026, 3, 6, 9, 0, tzinfo=UTC))
    [catchup] = scheduler.tick()
    assert catchup.trigger == "catchup"
    assert catchup.scheduled_for == datetime(2026, 3, 6, 2, 0, tzinfo=UTC)
    assert scheduler.tick() == []


def test_tick_skips_a_job_whose_run_is_still_active(app: FastAPI, world: World, clock: FakeClock) -> None:
    job = world.job(schedule={"cron": "*/15 * * * *"})
    scheduler = _scheduler(app)
    clock.advance(minutes=15)
    assert len(scheduler.tick()) == 1
    clock.advance(minutes=15)
    assert scheduler.tick() == []  # the first run is still queued
    assert len(world.user_a.get("/api/runs", params={"job_id": job["id"]}).json()) == 1


def test_tick_skips_jobs_of_revoked_agents(app: FastAPI, world: World, clock: FakeClock) -> None:
    world.job(schedule={"cron": "*/15 * * * *"})
    world.user_a.post(f"/api/agents/{world.agent_a.id}/revoke")
    clock.advance(minutes=15)
    assert _scheduler(app).tick() == []
