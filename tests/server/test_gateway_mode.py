"""Jobs in gateway mode (#30): the default for new S3 jobs; the agent's run and the recovery
console's run carry the gateway's URL and a token, never the storage's credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e3backup.server.db.models import Job
from e3backup.server.errors import FieldError
from e3backup.server.schemas import JobCreate
from e3backup.server.security.tokens import gateway_token, hash_token
from e3backup.server.services.jobs import GatewayServed, storage_mode
from tests.server.conftest import World, s3_destination

SECRETS = ("s3-SECRET-do-not-leak-4711", "AKIAEXAMPLE", "s3.example.net", "backups-acme")


def test_new_s3_jobs_default_to_gateway_local_and_sync_to_direct(world: World) -> None:
    assert world.job()["storage_mode"] == "gateway"
    assert world.job(destination={"type": "local", "path": "/srv/r", "repository_password": "pw-123456"}
                     )["storage_mode"] == "direct"
    assert world.job(storage_mode="direct")["storage_mode"] == "direct"
    sync = {"engine": "sync", "source_path": "C:\\Data"}
    assert world.job(**sync)["storage_mode"] == "direct"
    r = world.user_a.post("/api/jobs", json={**_files(world), **sync, "storage_mode": "gateway"})
    assert r.status_code == 422 and "storage_mode" in r.text
    job = world.job()  # an update that does not mention the mode keeps it; one that does changes it
    url = f"/api/jobs/{job['id']}"
    assert world.user_a.patch(url, json={"name": "renamed"}).json()["storage_mode"] == "gateway"
    assert world.user_a.patch(url, json={"storage_mode": "direct"}).json()["storage_mode"] == "direct"


def _files(world: World) -> dict[str, object]:
    return {"name": "x", "engine": "files", "agent_id": world.agent_a.id, "destination": s3_destination()}


def test_agent_gets_the_gateway_and_its_token_never_the_storage_credentials(world: World) -> None:
    job = world.job(retention={"keep_last": 3})
    assert world.user_a.post(f"/api/jobs/{job['id']}/run").status_code == 201
    r = world.agent_a.post("/api/agent/next_run")
    assert r.status_code == 200, r.text
    dest = r.json()["run"]["destination"]
    agent_token = world.agent_a.headers["Authorization"].split()[1]
    assert dest == {"type": "gateway", "url": f"http://testserver/gateway/job-{job['id']}/",
                    "token": gateway_token(agent_token), "repository_password": "repo-PASSWORD-do-not-leak-0815"}
    assert not any(s in json.dumps(r.json()) for s in SECRETS)
    state = world.client.app.state.e3  # type: ignore[attr-defined]
    from e3backup.server.db.models import Agent

    with state.sessions() as s:  # the gateway knows the token by its hash only
        assert s.get(Agent, world.agent_a.id).gateway_token_hash == hash_token(dest["token"])


def test_recovery_console_reads_through_the_gateway_with_its_session_token(world: World) -> None:
    job = world.job(engine="disk_image", disk_source_volume="\\\\.\\PhysicalDrive0", source_path="")
    r = world.user_a.post("/api/recovery/sessions", json={"job_id": job["id"], "snapshot_id": "snap-1",
                                                          "target_disk": "0"})
    assert r.status_code == 201, r.text
    token = r.json()["session_token"]
    r = world.client.post("/api/recovery/get_run", json={"run_id": r.json()["run_id"]},
                          headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    dest = r.json()["run"]["destination"]
    assert (dest["type"], dest["token"], dest["url"]) == ("gateway", token, f"http://testserver/gateway/job-{job['id']}/")
    assert not any(s in json.dumps(r.json()) for s in SECRETS)


def test_no_maintenance_command_to_the_agent_of_a_gateway_job(world: World) -> None:
    job = world.job()
    r = world.user_a.post(f"/api/agents/{world.agent_a.id}/commands",
                          json={"type": "maintenance", "job_id": job["id"], "payload": {"mode": "quick"}})
    assert r.status_code == 422 and "maintenance worker" in r.text


def test_gateway_mode_is_refused_where_the_gateway_cannot_serve_it(world: World, tmp_path: Path) -> None:
    folder = {"type": "local", "path": str(tmp_path / "on-the-agent"), "repository_password": "pw-123456"}
    r = world.user_a.post("/api/jobs", json={**_files(world), "source_path": "C:\\Data", "destination": folder,
                                             "storage_mode": "gateway"})
    assert r.status_code == 422 and "is on the agent machine" in r.text and "gateway_local_roots" in r.text
    job = world.job()  # gateway (S3); moved to a folder of the agent machine, it must become direct
    moved = world.user_a.patch(f"/api/jobs/{job['id']}", json={"destination": folder})
    assert moved.status_code == 422 and "use direct" in moved.text
    moved = world.user_a.patch(f"/api/jobs/{job['id']}", json={"destination": folder, "storage_mode": "direct"})
    assert moved.status_code == 200 and moved.json()["storage_mode"] == "direct"
    # a server whose gateway is off: S3 jobs default to direct, gateway is refused with the reason
    off = GatewayServed(enabled=False)
    s3_job = Job(destination={"type": "s3"}, storage_mode=None)
    spec = JobCreate.model_validate({**_files(world), "source_path": "C:\\Data"})
    assert storage_mode(spec, s3_job, off) == "direct"
    with pytest.raises(FieldError, match="gateway_enabled is off"):
        storage_mode(spec.model_copy(update={"storage_mode": "gateway"}), s3_job, off)
    served = GatewayServed(local_roots=(tmp_path,))  # a folder of the server the gateway may serve
    assert storage_mode(spec.model_copy(update={"storage_mode": "gateway"}),
                        Job(destination={"type": "local", "path": str(tmp_path / "r")}), served) == "gateway"
