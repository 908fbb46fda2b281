"""Recovery sessions hand the console a job's destination secrets, so: only administrators start
them, only for disk image jobs, and the token ends with its run, with its creator and on revoke."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from e3backup.server.security.roles import Role
from tests.server.conftest import Actor, World
from tests.server.test_authorization import role_user

HTML = {"Accept": "text/html"}


def _image_job(world: World, **fields: Any) -> dict[str, Any]:
    return world.job(engine="disk_image", disk_source_volume="C:", source_path="", **fields)


def _start(world: World, actor: Actor, job_id: int) -> tuple[int, Actor]:
    r = actor.post("/api/recovery/sessions", json={"job_id": job_id, "snapshot_id": "abc", "target_disk": "0"})
    assert r.status_code == 201, r.text
    return r.json()["run_id"], Actor(world.client, {"Authorization": f"Bearer {r.json()['session_token']}"})


def _works(console: Actor, run_id: int) -> int:
    return console.post("/api/recovery/get_run_status", json={"run_id": run_id}).status_code


def test_only_administrators_start_recovery_and_only_for_image_jobs(app: FastAPI, world: World) -> None:
    image, files = _image_job(world), world.job()
    for role in (Role.OPERATOR, Role.READ_ONLY):
        actor = role_user(app, world, f"{role.value}@acme.example", world.tenant_a, role)
        r = actor.post("/api/recovery/sessions", json={"job_id": image["id"], "snapshot_id": "abc"})
        assert r.status_code == 403, r.text
    r = world.user_a.post("/api/recovery/sessions", json={"job_id": files["id"], "snapshot_id": "abc"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "job_id"
    assert "disk images only" in r.json()["detail"]
    r = world.user_b.post("/api/recovery/sessions", json={"job_id": image["id"], "snapshot_id": "abc"})
    assert r.status_code == 422  # another tenant's job is no job at all
    _start(world, world.user_a, image["id"])
    _start(world, world.admin, image["id"])


def test_the_token_ends_when_the_run_finishes(world: World) -> None:
    run_id, console = _start(world, world.user_a, _image_job(world)["id"])
    assert console.post("/api/recovery/update_run", json={"run_id": run_id, "status": "running"}).status_code == 200
    assert console.post("/api/recovery/update_run", json={"run_id": run_id, "status": "success"}).status_code == 200
    r = console.post("/api/recovery/get_run", json={"run_id": run_id})
    assert r.status_code == 401 and "finished" in r.json()["detail"]


def test_the_token_ends_when_the_run_is_cancelled(world: World) -> None:
    run_id, console = _start(world, world.user_a, _image_job(world)["id"])
    assert world.user_a.post(f"/api/runs/{run_id}/cancel").status_code == 200  # queued: cancelled at once
    assert _works(console, run_id) == 401


def test_the_token_ends_when_its_creator_is_disabled_and_stays_ended(world: World) -> None:
    run_id, console = _start(world, world.user_a, _image_job(world)["id"])
    assert _works(console, run_id) == 200
    assert world.admin.patch(f"/api/users/{world.user_a.id}", json={"disabled": True}).status_code == 200
    assert _works(console, run_id) == 401
    assert world.admin.patch(f"/api/users/{world.user_a.id}", json={"disabled": False}).status_code == 200
    assert _works(console, run_id) == 401  # deleted on disable, not just paused


def test_revoke_ends_the_token_and_cancels_the_run(app: FastAPI, world: World) -> None:
    run_id, console = _start(world, world.user_a, _image_job(world)["id"])
    operator = role_user(app, world, "olga@acme.example", world.tenant_a, Role.OPERATOR)
    assert operator.post(f"/api/recovery/sessions/{run_id}/revoke").status_code == 403
    assert world.user_b.post(f"/api/recovery/sessions/{run_id}/revoke").status_code == 404
    r = world.user_a.post(f"/api/recovery/sessions/{run_id}/revoke")
    assert r.status_code == 200, r.text
    assert r.json() == {"run_id": run_id, "sessions_ended": 1, "run_status": "cancelled"}
    assert _works(console, run_id) == 401
    assert world.user_a.get(f"/api/runs/{run_id}").json()["error_summary"] == "recovery session revoked"


def test_the_dashboard_revokes_a_recovery_session(app: FastAPI, world: World) -> None:
    run_id, console = _start(world, world.user_a, _image_job(world)["id"])
    operator = role_user(app, world, "olga@acme.example", world.tenant_a, Role.OPERATOR)
    assert "Revoke the recovery session" not in operator.get(f"/runs/{run_id}", headers=HTML).text
    page = world.user_a.get(f"/runs/{run_id}", headers=HTML).text
    assert "Revoke the recovery session" in page
    r = operator.post(
        f"/runs/{run_id}/recovery/revoke", data={"csrf_token": operator.headers["X-CSRF-Token"]}, headers=HTML
    )
    assert r.status_code == 403
    assert _works(console, run_id) == 200
    r = world.user_a.post(
        f"/runs/{run_id}/recovery/revoke",
        data={"csrf_token": world.user_a.headers["X-CSRF-Token"]},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("notice=recovery-revoked")
    assert _works(console, run_id) == 401
    page = world.user_a.get(f"/runs/{run_id}?notice=recovery-revoked", headers=HTML).text
    assert "Recovery session revoked" in page and "Revoke the recovery session" not in page


def test_secrets_leave_only_through_get_run(world: World) -> None:
    """In direct mode the console gets the destination (it reads the repository) in get_run and
    nowhere else; in gateway mode it gets no storage secret at all (tests/server/test_gateway_mode.py)."""
    run_id, console = _start(world, world.user_a, _image_job(world, storage_mode="direct")["id"])
    secret = "s3-SECRET-do-not-leak-4711"
    assert secret in console.post("/api/recovery/get_run", json={"run_id": run_id}).text
    for call in ("get_run_status", "get_run_events", "poll_cancel", "refresh_session"):
        assert secret not in console.post(f"/api/recovery/{call}", json={"run_id": run_id}).text
