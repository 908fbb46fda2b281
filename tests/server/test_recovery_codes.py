"""One-time recovery codes: issued for one agent's image snapshot, typeable, single use, expiring
unused; redeemed by the console for a restore run and its session."""

from __future__ import annotations

import re
from typing import Any

from tests.server.conftest import Actor, FakeClock, World

CODE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}")


def image_backup(world: World, owner: Actor, agent: Actor, snapshot: str) -> dict[str, Any]:
    """A disk image job of ``agent`` with one successful run that saved ``snapshot``."""
    job = world.job(owner=owner, engine="disk_image", disk_source_volume="/dev/sda", source_path="")
    assert owner.post(f"/api/jobs/{job['id']}/run").status_code in (200, 201, 202)
    run = agent.post("/api/agent/next_run", json={}).json()["run"]
    r = agent.post(
        "/api/agent/update_run", json={"run_id": run["run_id"], "status": "success", "snapshot_id": snapshot}
    )
    assert r.status_code == 200, r.text
    return job


def issue(world: World, actor: Actor, agent_id: int, snapshot: str) -> Any:
    return actor.post("/api/recovery/codes", json={"agent_id": agent_id, "snapshot_id": snapshot})


def redeem(world: World, code: str) -> Any:
    return world.client.post("/api/recovery/redeem", json={"code": code})


def test_code_is_short_typeable_and_redeemed_once_for_a_session(world: World) -> None:
    image_backup(world, world.user_a, world.agent_a, "a1" * 32)
    r = issue(world, world.user_a, world.agent_a.id, "a1" * 32)
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    assert CODE.fullmatch(code)
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")  # as a person types it
    first = redeem(world, typed)
    assert first.status_code == 201, first.text
    body = first.json()
    console = Actor(world.client, {"Authorization": f"Bearer {body['session_token']}"})
    run = console.post("/api/recovery/get_run", json={"run_id": body["run_id"]}).json()["run"]
    assert run["restore"]["snapshot_id"] == "a1" * 32
    assert run["restore"]["hostname"] == "acme-pc"
    again = redeem(world, code)
    assert again.status_code == 401 and "already used" in again.json()["detail"]
    public = world.user_a.get(f"/api/runs/{body['run_id']}").json()
    assert (public["kind"], public["trigger"], public["status"]) == ("restore", "recovery", "queued")
    audit = world.user_a.get("/api/audit", params={"action": "recovery."}).json()["items"]
    assert [(e["action"], e["actor"]) for e in audit] == [
        ("recovery.start", "alice@acme.example"),
        ("recovery.code_issued", "alice@acme.example"),
    ]
    assert audit[0]["target_id"] == body["run_id"] and audit[0]["details"]["snapshot_id"] == "a1" * 32
    assert code not in str(audit)  # the code itself is never recorded


def test_an_unused_code_expires(world: World, clock: FakeClock) -> None:
    image_backup(world, world.user_a, world.agent_a, "b2" * 32)
    code = issue(world, world.user_a, world.agent_a.id, "b2" * 32).json()["code"]
    clock.advance(minutes=240)
    r = redeem(world, code)
    assert r.status_code == 401 and "expired unused" in r.json()["detail"]


def test_a_code_for_one_agent_cannot_name_another_agents_snapshot(app: Any, world: World) -> None:
    """Agent B (other tenant) and a second agent of tenant A both have image snapshots; a code for
    agent A accepts only A's own, whoever asks."""
    from tests.server.conftest import enroll, files_job

    image_backup(world, world.user_b, world.agent_b, "b0" * 32)
    other = enroll(world.client, world.enroll_a, "acme-nas", os="linux")
    r = world.user_a.post(
        "/api/jobs",
        json=files_job(other.id, name="NAS", engine="disk_image", disk_source_volume="/dev/sdb", source_path=""),
    )
    assert r.status_code == 201, r.text
    assert world.user_a.post(f"/api/jobs/{r.json()['id']}/run").status_code in (200, 201, 202)
    run = other.post("/api/agent/next_run", json={}).json()["run"]
    other.post("/api/agent/update_run", json={"run_id": run["run_id"], "status": "success", "snapshot_id": "c3" * 32})
    image_backup(world, world.user_a, world.agent_a, "a1" * 32)
    for snapshot in ("b0" * 32, "c3" * 32, "ff" * 32):
        for actor in (world.user_a, world.admin):
            r = issue(world, actor, world.agent_a.id, snapshot)
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["field"] == "snapshot_id"
            assert "not an image snapshot of acme-pc" in r.json()["detail"]
    assert issue(world, world.user_b, world.agent_a.id, "a1" * 32).status_code == 422  # not B's agent
    assert issue(world, world.user_a, world.agent_a.id, "a1" * 32).status_code == 201


def test_only_image_backups_are_restore_points_and_only_managers_issue(world: World) -> None:
    from e3backup.server.security.roles import Role
    from tests.server.test_authorization import role_user

    job = world.job()  # a files job
    world.user_a.post(f"/api/jobs/{job['id']}/run")
    run = world.agent_a.post("/api/agent/next_run", json={}).json()["run"]
    done = {"run_id": run["run_id"], "status": "success", "snapshot_id": "d4" * 32}
    world.agent_a.post("/api/agent/update_run", json=done)
    assert issue(world, world.user_a, world.agent_a.id, "d4" * 32).status_code == 422
    image_backup(world, world.user_a, world.agent_a, "a1" * 32)
    operator = role_user(world.client.app, world, "olga@acme.example", world.tenant_a, Role.OPERATOR)
    assert issue(world, operator, world.agent_a.id, "a1" * 32).status_code == 403
    assert world.client.post("/api/recovery/codes", json={"agent_id": 1, "snapshot_id": "x"}).status_code == 401


def test_wrong_codes_are_refused_and_rate_limited(world: World, clock: FakeClock) -> None:
    for _ in range(10):
        r = redeem(world, "ZZZZ-ZZZZ-ZZZZ")
        assert r.status_code == 401 and "unknown recovery code" in r.json()["detail"]
    assert redeem(world, "ZZZZ-ZZZZ-ZZZZ").status_code == 429
    clock.advance(minutes=6)
    assert redeem(world, "not a code").status_code == 401
    assert redeem(world, "").status_code == 422


def test_a_code_stops_working_when_its_creator_is_disabled(world: World) -> None:
    image_backup(world, world.user_a, world.agent_a, "a1" * 32)
    code = issue(world, world.user_a, world.agent_a.id, "a1" * 32).json()["code"]
    assert world.admin.patch(f"/api/users/{world.user_a.id}", json={"disabled": True}).status_code == 200
    r = redeem(world, code)
    assert r.status_code == 401 and "no longer works" in r.json()["detail"]
