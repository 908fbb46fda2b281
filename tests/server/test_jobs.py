"""Job validation (the seeds' rules), secrets at rest, update, run now and history."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import text

from tests.server.conftest import World, files_job, s3_destination


def _fields(r: Any) -> list[str]:
    assert r.status_code == 422, r.text
    return [e["field"] for e in r.json()["errors"]]


def test_create_files_job_hides_secrets(world: World) -> None:
    job = world.job()
    assert job["engine"] == "files"
    assert job["tenant_id"] == world.tenant_a["id"]
    dest = job["destination"]
    assert dest["has_secret_key"] is True
    assert dest["has_repository_password"] is True
    assert "secret_access_key" not in dest
    assert "repository_password" not in dest
    assert "do-not-leak" not in world.user_a.get(f"/api/jobs/{job['id']}").text
    assert "do-not-leak" not in world.user_a.get("/api/jobs").text


def test_secrets_are_encrypted_at_rest(app: FastAPI, world: World) -> None:
    world.job()
    with app.state.e3.engine.connect() as conn:
        rows = conn.execute(text("SELECT destination, destination_secrets FROM jobs")).all()
    dump = repr(rows)
    assert "s3-SECRET-do-not-leak-4711" not in dump
    assert "repo-PASSWORD-do-not-leak-0815" not in dump
    assert rows[0][1].startswith("v1:")


def test_kopia_is_accepted_as_files(world: World) -> None:
    assert world.job(engine="kopia")["engine"] == "files"


def test_files_job_needs_a_source(world: World) -> None:
    r = world.user_a.post("/api/jobs", json=files_job(world.agent_a.id, source_path=""))
    assert _fields(r) == ["source_path"]


def test_unknown_engine_names_the_field(world: World) -> None:
    assert _fields(world.user_a.post("/api/jobs", json=files_job(world.agent_a.id, engine="tape"))) == [
        "engine"
    ]


def test_disk_image_requires_agent_and_volume(world: World) -> None:
    base = files_job(world.agent_a.id, engine="disk_image", source_path="")
    r = world.user_a.post("/api/jobs", json={**base, "agent_id": None, "disk_source_volume": "C:"})
    assert _fields(r) == ["agent_id"]
    assert "disk_image jobs require an agent" in r.json()["detail"]
    assert _fields(world.user_a.post("/api/jobs", json=base)) == ["disk_source_volume"]
    assert _fields(world.user_a.post("/api/jobs", json={**base, "disk_source_volume": "  "})) == [
        "disk_source_volume"
    ]


def test_disk_image_defaults_and_source_path(world: World) -> None:
    job = world.job(engine="disk_image", source_path="", disk_source_volume="C:")
    assert job["disk_image_format"] == "vhdx"
    assert job["source_path"] == "C:"
    assert job["disk_temp_dir"] is None
    job = world.job(
        engine="disk_image", disk_source_volume="/dev/sda", disk_image_format="raw", disk_temp_dir="/tmp"
    )
    assert (job["disk_image_format"], job["disk_temp_dir"], job["source_path"]) == ("raw", "/tmp", "/dev/sda")


def test_disk_image_format_must_be_vhdx_or_raw(world: World) -> None:
    body = files_job(world.agent_a.id, engine="disk_image", disk_source_volume="C:", disk_image_format="vmdk")
    assert _fields(world.user_a.post("/api/jobs", json=body)) == ["disk_image_format"]


def test_disk_fields_only_on_disk_image_jobs(world: World) -> None:
    r = world.user_a.post("/api/jobs", json=files_job(world.agent_a.id, disk_source_volume="C:"))
    assert _fields(r) == ["disk_source_volume"]


def test_hyperv_requires_config(world: World) -> None:
    body = files_job(world.agent_a.id, engine="hyperv")
    assert _fields(world.user_a.post("/api/jobs", json=body)) == ["hyperv_config"]
    body["hyperv_config"] = {"vms": []}
    assert _fields(world.user_a.post("/api/jobs", json=body)) == ["hyperv_config.vms"]
    body["hyperv_config"] = {"vms": ["dc01"], "consistency_level": "perfect"}
    assert _fields(world.user_a.post("/api/jobs", json=body)) == ["hyperv_config.consistency_level"]
    body["hyperv_config"] = {"vms": ["dc01", "sql01"], "enable_rct": True, "consistency_level": "crash"}
    r = world.user_a.post("/api/jobs", json=body)
    assert r.status_code == 201
    assert r.json()["hyperv_config"] == {
        "vms": ["dc01", "sql01"],
        "enable_rct": True,
        "consistency_level": "crash",
    }


def test_hyperv_config_only_on_hyperv_jobs(world: World) -> None:
    r = world.user_a.post("/api/jobs", json=files_job(world.agent_a.id, hyperv_config={"vms": ["x"]}))
    assert _fields(r) == ["hyperv_config"]


POLICY_CASES = [
    ({"disk_image_cbt": "yes"}, "policy.disk_image_cbt"),
    ({"disk_image_bitmap": 1}, "policy.disk_image_bitmap"),
    ({"disk_image_strict_read_errors": "false"}, "policy.disk_image_strict_read_errors"),
    ({"parallel_disk_reads": 0}, "policy.parallel_disk_reads"),
    ({"parallel_disk_reads": 65}, "policy.parallel_disk_reads"),
    ({"restore_parallel_workers": "8"}, "policy.restore_parallel_workers"),
    ({"restore_segment_size_mb": 0}, "policy.restore_segment_size_mb"),
    ({"restore_kopia_parallel": 33}, "policy.restore_kopia_parallel"),
    ({"disk_image_cbd": True}, "policy.disk_image_cbd"),
    ({"vss_consistency_level": "app"}, "policy.vss_consistency_level"),
    ({"vss_backup_type": "log"}, "policy.vss_backup_type"),
    ({"vss_writer_failure": "ignore"}, "policy.vss_writer_failure"),
    ({"vss_exclude_writers": [""]}, "policy.vss_exclude_writers.0"),
]


def test_policy_flags_are_checked_by_type_and_range(world: World) -> None:
    for policy, field in POLICY_CASES:
        r = world.user_a.post("/api/jobs", json=files_job(world.agent_a.id, policy=policy))
        assert _fields(r) == [field], policy


def test_policy_flags_are_stored(world: World) -> None:
    policy = {
        "disk_image_change_tracking": False,
        "disk_image_strict_read_errors": True,
        "parallel_disk_reads": 4,
        "restore_parallel_workers": 12,
        "restore_segment_size_mb": 64,
        "restore_kopia_parallel": 8,
    }
    job = world.job(policy=policy)
    assert job["policy"]["disk_image_cbt"] is False
    assert job["policy"]["restore_segment_size_mb"] == 64


DESTINATION_CASES = [
    ({"secret_access_key": None}, "destination.secret_access_key"),
    ({"repository_password": None}, "destination.repository_password"),
    ({"endpoint": "s3.example.net"}, "destination.s3.endpoint"),
    ({"bucket": "Bad_Bucket"}, "destination.s3.bucket"),
    ({"type": "ftp"}, "destination"),
]


def test_destination_validation(world: World) -> None:
    for dest, field in DESTINATION_CASES:
        r = world.user_a.post(
            "/api/jobs", json=files_job(world.agent_a.id, destination=s3_destination(**dest))
        )
        assert _fields(r) == [field], dest


def test_local_destination(world: World) -> None:
    job = world.job(destination={"type": "local", "path": "/srv/repo", "repository_password": "longenough1"})
    assert job["destination"]["path"] == "/srv/repo"
    assert job["destination"]["has_secret_key"] is False
    assert job["destination"]["has_repository_password"] is True


SCHEDULE_CASES = [
    ({"cron": "every day"}, "schedule.cron"),
    ({"cron": "0 2 * * * *"}, "schedule.cron"),
    ({"cron": "61 2 * * *"}, "schedule.cron"),
    ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "schedule.timezone"),
]


def test_schedule_validation(world: World) -> None:
    for schedule, field in SCHEDULE_CASES:
        r = world.user_a.post("/api/jobs", json=files_job(world.agent_a.id, schedule=schedule))
        assert _fields(r) == [field], schedule


def test_schedule_sets_next_run_in_the_time_zone(world: World) -> None:
    job = world.job(schedule={"cron": "0 2 * * *", "timezone": "Europe/Berlin"})
    # clock: 2026-03-02 10:00 UTC -> next 02:00 Berlin (CET, UTC+1) is 2026-03-03 01:00 UTC
    assert job["next_run_at"].startswith("2026-03-03T01:00:00")


def test_job_on_another_tenants_agent_is_refused(world: World) -> None:
    r = world.user_a.post("/api/jobs", json=files_job(world.agent_b.id))
    assert _fields(r) == ["agent_id"]


def test_admin_creates_job_in_the_agents_tenant(world: World) -> None:
    r = world.admin.post("/api/jobs", json=files_job(world.agent_b.id))
    assert r.status_code == 201
    assert r.json()["tenant_id"] == world.tenant_b["id"]


def test_update_applies_the_same_rules_and_keeps_secrets(app: FastAPI, world: World) -> None:
    job = world.job(storage_mode="direct")  # direct mode: the agent gets the stored secrets
    url = f"/api/jobs/{job['id']}"
    assert _fields(world.user_a.patch(url, json={"engine": "disk_image"})) == ["disk_source_volume"]
    assert _fields(world.user_a.patch(url, json={"policy": {"parallel_disk_reads": 0}})) == [
        "policy.parallel_disk_reads"
    ]
    assert _fields(world.user_a.patch(url, json={"bogus": 1})) == ["bogus"]
    r = world.user_a.patch(url, json={"engine": "disk_image", "disk_source_volume": "D:"})
    assert r.status_code == 200, r.text
    assert (r.json()["source_path"], r.json()["disk_image_format"]) == ("D:", "vhdx")
    # destination changed without secrets: the stored ones are kept
    dest = {
        k: v
        for k, v in s3_destination(bucket="other-bucket").items()
        if "secret" not in k and "password" not in k
    }
    r = world.user_a.patch(url, json={"destination": dest})
    assert r.status_code == 200, r.text
    assert r.json()["destination"]["bucket"] == "other-bucket"
    world.user_a.post(f"/api/jobs/{job['id']}/run")
    run = world.agent_a.post("/api/agent/next_run").json()["run"]
    assert run["destination"]["secret_access_key"] == "s3-SECRET-do-not-leak-4711"
    # switching to a local destination needs only the repository password, which is kept
    r = world.user_a.patch(url, json={"destination": {"type": "local", "path": "/srv/r"}})
    assert r.status_code == 200, r.text


def test_update_of_engine_drops_old_engine_fields(world: World) -> None:
    job = world.job(engine="disk_image", source_path="", disk_source_volume="C:")
    r = world.user_a.patch(f"/api/jobs/{job['id']}", json={"engine": "files", "source_path": "/home"})
    assert r.status_code == 200, r.text
    assert r.json()["disk_source_volume"] is None
    assert r.json()["disk_image_format"] is None


def test_delete_job(world: World) -> None:
    job = world.job()
    assert world.user_a.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert world.user_a.get(f"/api/jobs/{job['id']}").status_code == 404


def test_run_now_and_history(world: World) -> None:
    job = world.job()
    r = world.user_a.post(f"/api/jobs/{job['id']}/run")
    assert r.status_code == 201
    assert r.json()["status"] == "queued"
    assert world.user_a.post(f"/api/jobs/{job['id']}/run").status_code == 409  # one at a time
    run_id = world.agent_a.post("/api/agent/next_run").json()["run"]["run_id"]
    world.agent_a.post(
        "/api/agent/update_run",
        json={
            "run_id": run_id,
            "status": "success",
            "bytes_processed": 10_000_000_000,
            "backup_type": "full",
        },
    )
    history = world.user_a.get(f"/api/jobs/{job['id']}/history").json()
    assert [(h["status"], h["bytes_processed"], h["backup_type"]) for h in history] == [
        ("success", 10_000_000_000, "full")
    ]


def test_malformed_json_is_a_clear_422(world: World) -> None:
    r = world.user_a.post("/api/jobs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("invalid request")


def test_deleting_a_job_cancels_its_queued_runs(world: World) -> None:
    job = world.job()
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
    assert world.user_a.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert world.user_a.get(f"/api/runs/{run['id']}").json()["status"] == "cancelled"
    assert world.agent_a.post("/api/agent/next_run").json()["run"] is None
