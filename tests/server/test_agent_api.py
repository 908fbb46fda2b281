"""The agent API: enroll, next_run, update_run, push_events, commands and disk reports."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from tests.server.conftest import Actor, FakeClock, World, enroll


def _queue(world: World, **job: Any) -> tuple[dict[str, Any], int]:
    created = world.job(**job)
    r = world.user_a.post(f"/api/jobs/{created['id']}/run")
    assert r.status_code == 201, r.text
    return created, int(r.json()["id"])


def _next(agent: Actor, **params: Any) -> dict[str, Any] | None:
    r = agent.post("/api/agent/next_run", params=params)
    assert r.status_code == 200, r.text
    run: dict[str, Any] | None = r.json()["run"]
    return run


# --- enroll ----------------------------------------------------------------------------------


def test_enroll_gives_a_hashed_agent_token(app: FastAPI, world: World) -> None:
    agent = enroll(world.client, world.enroll_a, "new-host", os="linux")
    assert agent.info["tenant_id"] == world.tenant_a["id"]
    token = agent.info["agent_token"]
    assert token.startswith("e3a_")
    with app.state.e3.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT token_hash FROM agents"))]
    assert token not in stored
    assert all(len(h) == 64 for h in stored)
    listed = world.user_a.get("/api/agents").json()
    assert "new-host" in [a["hostname"] for a in listed]
    assert agent.post("/api/agent/next_run").status_code == 200


def test_enroll_with_a_wrong_token_is_refused_and_rate_limited(world: World, clock: FakeClock) -> None:
    body = {"enrollment_token": "e3e_guess", "hostname": "h", "os": "linux"}
    for _ in range(10):
        assert world.client.post("/api/agent/enroll", json=body).status_code == 401
    r = world.client.post("/api/agent/enroll", json={**body, "enrollment_token": world.enroll_a})
    assert r.status_code == 429
    assert "Retry-After" in r.headers
    clock.advance(minutes=6)
    assert (
        world.client.post("/api/agent/enroll", json={**body, "enrollment_token": world.enroll_a}).status_code
        == 201
    )


def test_enroll_validation_names_the_field(world: World) -> None:
    r = world.client.post("/api/agent/enroll", json={"enrollment_token": world.enroll_a, "os": "linux"})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["hostname"]


def test_rotated_enrollment_token_replaces_the_old_one(world: World) -> None:
    r = world.user_a.post(f"/api/tenants/{world.tenant_a['id']}/enrollment-token")
    assert r.status_code == 201
    body = {"enrollment_token": world.enroll_a, "hostname": "h", "os": "linux"}
    assert world.client.post("/api/agent/enroll", json=body).status_code == 401
    body["enrollment_token"] = r.json()["enrollment_token"]
    assert world.client.post("/api/agent/enroll", json=body).status_code == 201


def test_agent_calls_need_a_valid_agent_token(world: World) -> None:
    assert world.client.post("/api/agent/next_run").status_code == 401
    r = world.client.post("/api/agent/next_run", headers={"Authorization": "Bearer e3a_forged"})
    assert r.status_code == 401
    # a user's session is not an agent
    assert world.user_a.post("/api/agent/next_run").status_code == 401


def test_revoked_agent_is_locked_out(world: World) -> None:
    assert world.user_a.post(f"/api/agents/{world.agent_a.id}/revoke").status_code == 200
    assert world.agent_a.post("/api/agent/next_run").status_code == 401


def test_online_offline_and_last_seen(world: World, clock: FakeClock) -> None:
    agent = world.user_a.get(f"/api/agents/{world.agent_a.id}").json()
    assert (agent["online"], agent["last_seen_at"]) == (False, None)  # enrolled, never called in
    world.agent_a.post("/api/agent/next_run")
    assert world.user_a.get(f"/api/agents/{world.agent_a.id}").json()["online"] is True
    clock.advance(minutes=10)
    assert world.user_a.get(f"/api/agents/{world.agent_a.id}").json()["online"] is False
    world.agent_a.post("/api/agent/next_run", json={"agent_version": "2.1", "os_version": "Windows 11 24H2"})
    agent = world.user_a.get(f"/api/agents/{world.agent_a.id}").json()
    assert (agent["online"], agent["agent_version"], agent["os_version"]) == (True, "2.1", "Windows 11 24H2")
    assert agent["last_seen_at"].startswith("2026-03-02T10:10")


# --- next_run --------------------------------------------------------------------------------


def test_next_run_is_empty_without_work(world: World) -> None:
    assert _next(world.agent_a) is None


def test_next_run_hands_out_the_run_with_secrets_once(world: World) -> None:
    job, run_id = _queue(world, policy={"parallel_disk_reads": 4}, retention={"keep_daily": 7},
                         storage_mode="direct")
    run = _next(world.agent_a)
    assert run is not None
    assert (run["run_id"], run["job_id"], run["engine"], run["kind"]) == (
        run_id,
        job["id"],
        "files",
        "backup",
    )
    assert run["destination"]["secret_access_key"] == "s3-SECRET-do-not-leak-4711"
    assert run["destination"]["repository_password"] == "repo-PASSWORD-do-not-leak-0815"
    assert run["policy"]["parallel_disk_reads"] == 4
    assert run["policy"]["disk_image_cbt"] is True
    assert run["retention"]["keep_daily"] == 7
    assert _next(world.agent_a) is None  # claimed: now running
    assert world.user_a.get(f"/api/runs/{run_id}").json()["status"] == "running"
    assert _next(world.agent_b) is None  # never another agent's run


def test_next_run_disk_image_fields(world: World) -> None:
    _queue(world, engine="disk_image", disk_source_volume="C:", disk_temp_dir="D:\\tmp")
    run = _next(world.agent_a)
    assert run is not None
    assert (run["engine"], run["disk_source_volume"], run["disk_image_format"], run["disk_temp_dir"]) == (
        "disk_image",
        "C:",
        "vhdx",
        "D:\\tmp",
    )
    assert run["source_path"] == "C:"


def test_hyperv_chain_state_round_trip(world: World) -> None:
    job, run_id = _queue(world, engine="hyperv", hyperv_config={"vms": ["dc01", "sql01"]})
    run = _next(world.agent_a)
    assert run is not None
    assert run["hyperv_config"] == {
        "vms": ["dc01", "sql01"],
        "enable_rct": True,
        "consistency_level": "application",
    }
    vms = {v["vm_name"]: v for v in run["hyperv_vms"]}
    assert set(vms) == {"dc01", "sql01"}
    assert vms["dc01"]["last_checkpoint_id"] == "" and vms["dc01"]["last_rct_ids"] == {}
    results = [
        {
            "vm_id": vms["dc01"]["vm_id"],
            "vm_guid": "1111-aaaa",
            "backup_type": "full",
            "checkpoint_id": "cp-1",
            "rct_ids": {"dc01.vhdx": "rct:1"},
            "changed_bytes": 5000,
            "consistency_level": "application",
        },
        {"vm_name": "sql01", "backup_type": "full", "error": "VM is off", "checkpoint_id": "cp-x"},
    ]
    r = world.agent_a.post(
        "/api/agent/update_run",
        json={"run_id": run_id, "status": "warning", "hyperv_results": results, "snapshot_id": "snap1"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["run"]["backup_type"] == "full"
    world.user_a.post(f"/api/jobs/{job['id']}/run")
    run2 = _next(world.agent_a)
    assert run2 is not None
    vms2 = {v["vm_name"]: v for v in run2["hyperv_vms"]}
    assert (vms2["dc01"]["last_checkpoint_id"], vms2["dc01"]["last_rct_ids"]) == (
        "cp-1",
        {"dc01.vhdx": "rct:1"},
    )
    assert vms2["dc01"]["vm_guid"] == "1111-aaaa"
    assert vms2["sql01"]["last_checkpoint_id"] == ""  # a failed VM does not advance its chain
    assert run2["parent_snapshot_id"] == "snap1"
    public = world.user_a.get(f"/api/runs/{run_id}").json()
    assert public["hyperv_results"][0]["changed_bytes"] == 5000


def test_hyperv_result_for_an_unknown_vm_names_the_field(world: World) -> None:
    _job, run_id = _queue(world, engine="hyperv", hyperv_config={"vms": ["dc01"]})
    _next(world.agent_a)
    r = world.agent_a.post(
        "/api/agent/update_run",
        json={"run_id": run_id, "status": "success", "hyperv_results": [{"vm_name": "ghost"}]},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "hyperv_results.0"


# --- update_run ------------------------------------------------------------------------------


def test_update_run_progress_and_result(world: World, clock: FakeClock) -> None:
    _job, run_id = _queue(world)
    _next(world.agent_a)
    progress = {
        "run_id": run_id,
        "progress_pct": 42.5,
        "bytes_total": 6_000_000_000,
        "bytes_processed": 2_550_000_000,
        "bytes_uploaded": 1_000_000_000,
        "speed_bytes_per_sec": 123456789.5,
        "eta_seconds": 30,
        "files_processed": 17,
    }
    r = world.agent_a.post("/api/agent/update_run", json=progress)
    assert r.status_code == 200, r.text
    assert r.json()["cancel_requested"] is False
    public = world.user_a.get(f"/api/runs/{run_id}").json()
    assert {k: public[k] for k in progress if k != "run_id"} == {
        k: v for k, v in progress.items() if k != "run_id"
    }
    clock.advance(minutes=5)
    final = {
        "run_id": run_id,
        "status": "success",
        "manifest_id": "ab" * 32,
        "backup_type": "incremental",
        "disk_manifests_json": {"C:": "snap-c", "D:": "snap-d"},
    }
    assert world.agent_a.post("/api/agent/update_run", json=final).status_code == 200
    public = world.user_a.get(f"/api/runs/{run_id}").json()
    assert (public["status"], public["snapshot_id"], public["backup_type"]) == (
        "success",
        "ab" * 32,
        "incremental",
    )
    assert public["disk_manifests_json"] == {"C:": "snap-c", "D:": "snap-d"}
    assert public["progress_pct"] == 100.0
    assert public["duration_seconds"] == 300.0
    # resending the final update is harmless; changing the outcome is not allowed
    assert world.agent_a.post("/api/agent/update_run", json=final).status_code == 200
    r = world.agent_a.post("/api/agent/update_run", json={"run_id": run_id, "status": "failed"})
    assert r.status_code == 409


def test_update_run_validation(world: World) -> None:
    _job, run_id = _queue(world)
    _next(world.agent_a)
    for body, field in (
        ({"run_id": run_id, "status": "exploded"}, "status"),
        ({"run_id": run_id, "progress_pct": 101}, "progress_pct"),
        ({"run_id": run_id, "bytes_total": -1}, "bytes_total"),
        ({"run_id": run_id, "backup_type": "differential"}, "backup_type"),
        ({"run_id": run_id, "disk_manifests_json": {"C:": 5}}, "disk_manifests_json.C:"),
        ({"status": "running"}, "run_id"),
    ):
        r = world.agent_a.post("/api/agent/update_run", json=body)
        assert r.status_code == 422, body
        assert [e["field"] for e in r.json()["errors"]] == [field], body


def test_update_of_another_agents_run_is_404(world: World) -> None:
    _job, run_id = _queue(world)
    r = world.agent_b.post("/api/agent/update_run", json={"run_id": run_id, "status": "failed"})
    assert r.status_code == 404
    r = world.agent_b.post("/api/agent/push_events", json={"run_id": run_id, "events": []})
    assert r.status_code == 404


# --- push_events -----------------------------------------------------------------------------


def _events(*seqs: int) -> list[dict[str, Any]]:
    return [
        {
            "seq": s,
            "code": "DISK_IMAGE_READ_RECOVERED" if s % 2 else "DISK_IMAGE_STREAM_START",
            "message": f"event {s}",
            "details": {"offset": s * 4096},
        }
        for s in seqs
    ]


def test_push_events_is_idempotent(world: World) -> None:
    _job, run_id = _queue(world)
    _next(world.agent_a)
    r = world.agent_a.post("/api/agent/push_events", json={"run_id": run_id, "events": _events(1, 2, 3)})
    assert r.json() == {"accepted": 3, "duplicates": 0, "last_seq": 3, "dropped": 0}
    r = world.agent_a.post("/api/agent/push_events", json={"run_id": run_id, "events": _events(1, 2, 3)})
    assert r.json() == {"accepted": 0, "duplicates": 3, "last_seq": 3, "dropped": 0}
    r = world.agent_a.post("/api/agent/push_events", json={"run_id": run_id, "events": _events(3, 4, 4)})
    assert r.json() == {"accepted": 1, "duplicates": 2, "last_seq": 4, "dropped": 0}
    events = world.user_a.get(f"/api/runs/{run_id}/events").json()
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    recovered, started = events[0], events[1]  # seq 1 (odd) and 2
    assert (started["code"], started["level"], started["details"]) == (
        "DISK_IMAGE_STREAM_START",
        "info",
        {"offset": 8192},
    )
    assert (recovered["code"], recovered["level"]) == (
        "DISK_IMAGE_READ_RECOVERED",
        "warning",
    )  # the code's level
    assert "SMART" in recovered["meaning"]
    assert recovered["ts"].startswith("2026-03-02T10:00:00")  # no ts given: the server's time
    after = world.user_a.get(f"/api/runs/{run_id}/events", params={"after_id": events[1]["id"]}).json()
    assert [e["seq"] for e in after] == [3, 4]


def test_push_events_validation(world: World) -> None:
    _job, run_id = _queue(world)
    bad = [
        {"seq": -1, "code": "X"},
        {"seq": 1, "code": "lower case"},
        {"seq": 1, "code": "OK", "level": "fatal"},
    ]
    for event, field in zip(bad, ("events.0.seq", "events.0.code", "events.0.level"), strict=True):
        r = world.agent_a.post("/api/agent/push_events", json={"run_id": run_id, "events": [event]})
        assert r.status_code == 422
        assert [e["field"] for e in r.json()["errors"]] == [field]


# --- commands --------------------------------------------------------------------------------


def test_restore_command_round_trip(world: World) -> None:
    job = world.job()
    r = world.user_a.post(
        f"/api/agents/{world.agent_a.id}/commands",
        json={
            "type": "restore",
            "job_id": job["id"],
            "payload": {"snapshot_id": "abc", "target_path": "C:\\r"},
        },
    )
    assert r.status_code == 201, r.text
    cmd = r.json()
    assert (cmd["type"], cmd["status"]) == ("restore", "pending")
    polled = world.agent_a.post("/api/agent/poll_commands").json()["commands"]
    assert [(c["command_id"], c["run_id"]) for c in polled] == [(cmd["id"], cmd["run_id"])]
    assert world.agent_b.post("/api/agent/poll_commands").json()["commands"] == []
    ack = {"command_id": cmd["id"], "status": "acknowledged"}
    assert world.agent_a.post("/api/agent/ack_command", json=ack).json()["status"] == "acknowledged"
    assert world.agent_a.post("/api/agent/poll_commands").json()["commands"] == []
    run = _next(world.agent_a, run_id=cmd["run_id"])
    assert run is not None
    assert (run["kind"], run["restore"]["snapshot_id"]) == ("restore", "abc")
    assert run["destination"]["repository_password"] == "repo-PASSWORD-do-not-leak-0815"
    world.agent_a.post("/api/agent/update_run", json={"run_id": run["run_id"], "status": "success"})
    done = {"command_id": cmd["id"], "status": "completed", "result": {"files_restored": 12}}
    assert world.agent_a.post("/api/agent/ack_command", json=done).status_code == 200
    assert world.agent_a.post("/api/agent/ack_command", json=done).status_code == 200  # resent
    r = world.agent_a.post("/api/agent/ack_command", json={**done, "status": "failed"})
    assert r.status_code == 409
    shown = world.user_a.get(f"/api/commands/{cmd['id']}").json()
    assert (shown["status"], shown["result"]) == ("completed", {"files_restored": 12})
    assert [c["id"] for c in world.user_a.get(f"/api/agents/{world.agent_a.id}/commands").json()] == [
        cmd["id"]
    ]


def test_command_validation(world: World) -> None:
    job = world.job()
    url = f"/api/agents/{world.agent_a.id}/commands"
    r = world.user_a.post(url, json={"type": "restore", "job_id": job["id"]})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "payload.snapshot_id")
    r = world.user_a.post(url, json={"type": "list_disks", "job_id": job["id"]})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "type")
    r = world.user_a.post(url, json={"type": "maintenance", "job_id": 999})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "job_id")
    r = world.agent_a.post("/api/agent/ack_command", json={"command_id": 999, "status": "completed"})
    assert r.status_code == 404


def test_maintenance_command_creates_a_maintenance_run(world: World) -> None:
    job = world.job(storage_mode="direct")  # gateway mode: the worker's (tests/server/test_gateway_mode.py)
    r = world.user_a.post(
        f"/api/agents/{world.agent_a.id}/commands",
        json={"type": "maintenance", "job_id": job["id"], "payload": {"mode": "prune"}},
    )
    assert r.status_code == 201
    run = _next(world.agent_a)
    assert run is not None
    assert (run["kind"], run["restore"]["mode"]) == ("maintenance", "prune")


def test_next_run_kind_backup_leaves_command_runs_to_their_command(world: World) -> None:
    job = world.job(storage_mode="direct")
    r = world.user_a.post(
        f"/api/agents/{world.agent_a.id}/commands",
        json={"type": "maintenance", "job_id": job["id"], "payload": {"mode": "quick"}},
    )
    maintenance_run = r.json()["run_id"]
    assert _next(world.agent_a, kind="backup") is None
    backup_run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()["id"]
    got = _next(world.agent_a, kind="backup")
    assert got is not None and got["run_id"] == backup_run
    got = _next(world.agent_a, run_id=maintenance_run)
    assert got is not None and got["kind"] == "maintenance"
    assert world.agent_a.post("/api/agent/next_run", params={"kind": "nonsense"}).status_code == 422


def test_cancel_queued_and_running_runs(world: World) -> None:
    job, run_id = _queue(world)
    r = world.user_a.post(f"/api/runs/{run_id}/cancel")
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    assert world.user_a.post(f"/api/runs/{run_id}/cancel").status_code == 409
    world.user_a.post(f"/api/jobs/{job['id']}/run")
    run = _next(world.agent_a)
    assert run is not None
    r = world.user_a.post(f"/api/runs/{run['run_id']}/cancel")
    assert (r.json()["status"], r.json()["cancel_requested"]) == ("running", True)
    cmds = world.agent_a.post("/api/agent/poll_commands").json()["commands"]
    assert [(c["type"], c["run_id"]) for c in cmds] == [("cancel", run["run_id"])]
    r = world.agent_a.post("/api/agent/update_run", json={"run_id": run["run_id"], "progress_pct": 50})
    assert r.json()["cancel_requested"] is True
    world.agent_a.post("/api/agent/update_run", json={"run_id": run["run_id"], "status": "cancelled"})
    assert world.user_a.get(f"/api/runs/{run['run_id']}").json()["status"] == "cancelled"


# --- disks -----------------------------------------------------------------------------------

DISKS = {
    "disks": [
        {
            "path": "\\\\.\\PhysicalDrive0",
            "model": "Samsung SSD",
            "size_bytes": 512_110_190_592,
            "partition_style": "gpt",
            "volumes": [{"path": "C:", "filesystem": "NTFS", "size_bytes": 500_000_000_000, "free_bytes": 1}],
        }
    ],
    "volumes": [],
}


def test_report_disks_and_read_them(world: World) -> None:
    r = world.agent_a.post("/api/agent/report_disks", json=DISKS)
    assert r.status_code == 200
    shown = world.user_a.get(f"/api/agents/{world.agent_a.id}/disks").json()
    assert shown["disks"][0]["volumes"][0]["path"] == "C:"
    assert shown["reported_at"] is not None
    r = world.agent_a.post("/api/agent/report_disks", json={"disks": [{"size_bytes": 5}]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "disks.0.path"


def test_event_time_from_the_agent_is_kept_in_utc(world: World) -> None:
    _job, run_id = _queue(world)
    event = {"seq": 1, "code": "REPOSITORY_OPENED", "ts": "2026-03-02T11:30:00+01:00"}
    world.agent_a.post("/api/agent/push_events", json={"run_id": run_id, "events": [event]})
    [shown] = world.user_a.get(f"/api/runs/{run_id}/events").json()
    assert shown["ts"].startswith("2026-03-02T10:30:00")


def test_share_credentials_are_sealed_and_handed_to_the_agent_only(app: FastAPI, world: World) -> None:
    """A Windows files job on a UNC share: the share's user and password are stored sealed with the
    destination's secrets (never in a job view), kept across an update, and given to the agent in
    the run assignment (tests/engines/test_files_windows_paths.py connects with them)."""
    from sqlalchemy import text

    creds = {"username": "CORP\\backup", "password": "share-PASSWORD-do-not-leak-1234"}
    job = world.job(source_path="\\\\nas\\finance", share_credentials=creds)
    assert "share-PASSWORD" not in world.user_a.get(f"/api/jobs/{job['id']}").text
    with app.state.e3.engine.connect() as conn:
        rows = repr(conn.execute(text("SELECT * FROM jobs")).all())
    assert "share-PASSWORD" not in rows and "CORP" not in rows
    r = world.user_a.patch(f"/api/jobs/{job['id']}", json={"name": "Finance share"})
    assert r.status_code == 200, r.text
    r = world.user_a.post(f"/api/jobs/{job['id']}/run")
    assert r.status_code == 201, r.text
    run = _next(world.agent_a)
    assert run is not None and run["share_credentials"] == creds  # kept across the update
    assert "share_password" not in run["destination"] and "share_username" not in run["destination"]
