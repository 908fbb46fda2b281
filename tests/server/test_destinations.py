"""Storage destinations defined once per tenant (#25): used by several jobs, changed in one place,
secrets never returned or logged, tenants kept apart, quotas that warn and then stop backups."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI

from e3backup.server.db.models import AlertIncident, AuditEvent, RepositoryMaintenance, Run
from tests.server.conftest import World, files_job, s3_destination
from tests.web.conftest import form_post

SECRET = "s3-SECRET-do-not-leak-4711"
PASSWORD = "repo-PASSWORD-do-not-leak-0815"


def _destination(world: World, name: str = "Offsite", **extra: Any) -> dict[str, Any]:
    r = world.user_a.post("/api/destinations", json={"name": name, "destination": s3_destination(), **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _assignment(world: World, job_id: int) -> dict[str, Any]:
    assert world.user_a.post(f"/api/jobs/{job_id}/run").status_code == 201
    r = world.agent_a.post("/api/agent/next_run")
    assert r.status_code == 200, r.text
    run: dict[str, Any] = r.json()["run"]
    world.agent_a.post("/api/agent/update_run", json={"run_id": run["run_id"], "status": "success"})
    return run


def test_a_destination_defined_once_serves_two_jobs_and_a_change_reaches_both(
    app: FastAPI, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dest = _destination(world)
    assert SECRET not in str(dest) and PASSWORD not in str(dest)
    assert dest["destination"]["bucket"] == "backups-acme" and dest["destination"]["has_secret_key"]
    jobs = []
    for name in ("Documents", "Mail"):
        # direct mode: the agent gets the credentials (gateway mode: tests/server/test_gateway_mode.py)
        body = files_job(world.agent_a.id, name=name, destination_id=dest["id"], storage_mode="direct")
        del body["destination"]
        r = world.user_a.post("/api/jobs", json=body)
        assert r.status_code == 201, r.text
        jobs.append(r.json())
    assert [j["destination_id"] for j in jobs] == [dest["id"]] * 2
    assert jobs[0]["destination"]["endpoint"] == "https://s3.example.net"
    assert world.user_a.get(f"/api/destinations/{dest['id']}").json()["jobs"] == [j["id"] for j in jobs]

    # the agent gets the destination's secrets in its assignment, for either job
    run = _assignment(world, jobs[0]["id"])
    assert run["destination"]["secret_access_key"] == SECRET
    assert run["destination"]["repository_password"] == PASSWORD

    # new credentials, given once: both jobs use them; the old secret is kept where not given
    change = {"destination": s3_destination(secret_access_key="rotated-SECRET-2027", repository_password=None)}
    r = world.user_a.patch(f"/api/destinations/{dest['id']}", json=change)
    assert r.status_code == 200, r.text
    for job in jobs:
        run = _assignment(world, job["id"])
        assert run["destination"]["secret_access_key"] == "rotated-SECRET-2027"
        assert run["destination"]["repository_password"] == PASSWORD

    listed = world.user_a.get("/api/destinations").text + world.user_a.get(f"/api/jobs/{jobs[1]['id']}").text
    assert "rotated-SECRET" not in listed and PASSWORD not in listed
    with app.state.e3.sessions() as s:
        trail = str([(a.action, a.details) for a in s.query(AuditEvent)])
    assert "destination.create" in trail and "destination.update" in trail
    for secret in (SECRET, PASSWORD, "rotated-SECRET-2027"):
        assert secret not in trail and secret not in caplog.text

    # a clone (or a template's copies) keeps using the destination
    r = world.user_a.post(f"/api/jobs/{jobs[0]['id']}/clone", json={"name": "Documents copy"})
    assert r.status_code == 201, r.text
    assert [c["destination_id"] for c in r.json()] == [dest["id"]]

    # a job moved to an inline destination no longer follows the stored one
    r = world.user_a.patch(f"/api/jobs/{jobs[1]['id']}",
                           json={"destination": s3_destination(bucket="inline-bucket")})
    assert r.status_code == 200, r.text
    assert r.json()["destination_id"] is None and r.json()["destination"]["bucket"] == "inline-bucket"


def test_destinations_are_per_tenant_and_cannot_be_deleted_while_used(world: World) -> None:
    dest = _destination(world)
    assert world.user_b.get(f"/api/destinations/{dest['id']}").status_code == 404
    assert world.user_b.get("/api/destinations").json() == []
    body = files_job(world.agent_b.id, destination_id=dest["id"])
    del body["destination"]
    r = world.user_b.post("/api/jobs", json=body)
    assert r.status_code == 422 and "destination_id" in r.text
    r = world.user_a.post("/api/destinations", json={"name": "offsite", "destination": s3_destination()})
    assert r.status_code == 422 and "already has a destination named" in r.text
    r = world.user_a.post("/api/destinations", json={"name": "No secret",
                                                      "destination": s3_destination(secret_access_key=None)})
    assert r.status_code == 422 and "destination.secret_access_key" in r.text
    job = world.job(destination_id=dest["id"], destination=None)
    r = world.user_a.delete(f"/api/destinations/{dest['id']}")
    assert r.status_code == 409 and "used by 1 job(s): Documents" in r.text
    assert world.user_a.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert world.user_a.delete(f"/api/destinations/{dest['id']}").status_code == 204
    # the deleted job kept its copy: its snapshots stay restorable
    assert world.admin.get(f"/api/jobs/{job['id']}").status_code in (200, 404)


def test_quota_warns_then_stops_new_backups_and_clears(app: FastAPI, world: World) -> None:
    from e3backup.server.services import maintenance, quotas

    dest = _destination(world, quota_bytes=1000, quota_warn_percent=80)
    job = world.job(destination_id=dest["id"], destination=None)
    state = app.state.e3

    def stored(n: int) -> None:
        with state.sessions() as s:
            maintenance.ensure_rows(s, state.clock.now(), 7, 28)
            (row,) = s.query(RepositoryMaintenance).all()
            row.stored_bytes, row.measure_needed = n, False
            quotas.evaluate(s, state.clock.now())
            s.commit()

    def open_incidents() -> list[str]:
        with state.sessions() as s:
            rows = s.query(AlertIncident).filter(AlertIncident.cleared_at.is_(None),
                                                 AlertIncident.rule == "storage_quota")
            return sorted(i.title for i in rows)

    stored(850)
    assert open_incidents() == ["The storage destination Offsite is near its quota: 850 bytes of 1000 bytes (85 %)"]
    assert world.user_a.post(f"/api/jobs/{job['id']}/run").status_code == 201  # a warning only
    run = world.agent_a.post("/api/agent/next_run").json()["run"]
    world.agent_a.post("/api/agent/update_run", json={"run_id": run["run_id"], "status": "success"})

    stored(1200)
    full = "The storage destination Offsite is full: 1.2 KiB of 1000 bytes (120 %); new backups stop"
    assert full in open_incidents()
    r = world.user_a.post(f"/api/jobs/{job['id']}/run")
    assert r.status_code == 409 and "storage quota reached: storage destination Offsite" in r.text
    # a run queued before (the schedule) ends FAILED with the reason instead of being handed out
    with state.sessions() as s:
        queued = Run(tenant_id=job["tenant_id"], job_id=job["id"], agent_id=job["agent_id"], kind="backup",
                     trigger="schedule", status="queued", created_at=state.clock.now())
        s.add(queued)
        s.commit()
        queued_id = queued.id
    assert world.agent_a.post("/api/agent/next_run").json()["run"] is None
    shown = world.user_a.get(f"/api/runs/{queued_id}").json()
    assert shown["status"] == "failed" and "storage quota reached" in shown["error_summary"]

    # the tenant's own quota counts every repository of the tenant
    r = world.admin.request("PUT", f"/api/tenants/{world.tenant_a['id']}/quota", json={"quota_bytes": 5000})
    assert r.json() == {"tenant_id": world.tenant_a["id"], "quota_bytes": 5000, "stored_bytes": 1200}
    r = world.user_a.request("PUT", f"/api/tenants/{world.tenant_a['id']}/quota", json={"quota_bytes": 1})
    assert r.status_code == 403

    r = world.user_a.patch(f"/api/destinations/{dest['id']}", json={"quota_bytes": 10_000})
    assert r.status_code == 200, r.text
    stored(1200)
    assert open_incidents() == []
    assert world.user_a.post(f"/api/jobs/{job['id']}/run").status_code == 201


def test_test_connection_of_an_agent_folder_the_server_cannot_read_gives_the_agents_verdict(world: World) -> None:
    """Outside ``browse_local_roots`` (none set here) the server cannot open the folder: the answer
    says so and why, then what the agents said of it, or that none has used it yet and how to test."""
    local = {"type": "local", "path": "/srv/agent-repos/acme", "repository_password": PASSWORD}
    r = world.user_a.post("/api/destinations", json={"name": "On the NAS", "destination": local})
    assert r.status_code == 201, r.text
    dest_id = r.json()["id"]

    def test() -> dict[str, Any]:
        r = world.user_a.post(f"/api/destinations/{dest_id}/test")
        assert r.status_code == 200, r.text
        return dict(r.json())

    untested = test()  # before: ok False, "OUT_OF_REACH ... restore on the agent instead"
    html = form_post(world.user_a, f"/destinations/{dest_id}/test", {}).text
    assert "Not tested yet</strong> (AGENT_NOT_TESTED)" in html and 'class="notice"' in html
    assert (untested["ok"], untested["code"]) == (None, "AGENT_NOT_TESTED")
    assert "outside the server's browse_local_roots (none set)" in untested["steps"][0]
    assert "no agent has used it yet" in untested["message"] and "local_destination_roots" in untested["message"]

    body = files_job(world.agent_a.id, name="NAS files", destination_id=dest_id)
    del body["destination"]
    job = world.user_a.post("/api/jobs", json=body).json()

    def run_saying(code: str, message: str, status: str) -> int:
        run = _assignment_open(world, job["id"])
        event = {"seq": 1, "code": code, "message": message, "details": {}}
        assert world.agent_a.post("/api/agent/push_events", json={"run_id": run, "events": [event]}).status_code == 200
        world.agent_a.post("/api/agent/update_run", json={"run_id": run, "status": status})
        return run

    refused = run_saying("RUN_REFUSED", "run refused: destination.path: /srv/agent-repos/acme is outside this "
                         "agent's local_destination_roots (/var/backups)", "failed")
    verdict = test()
    assert (verdict["ok"], verdict["code"]) == (False, "AGENT_REFUSED")
    assert f"run #{refused} of job NAS files" in verdict["message"]
    assert "outside this agent's local_destination_roots (/var/backups)" in verdict["message"]

    opened = run_saying("REPOSITORY_OPENED", "repository /srv/agent-repos/acme opened", "success")
    verdict = test()
    assert (verdict["ok"], verdict["code"]) == (True, "AGENT_OPENED") and f"run #{opened}" in verdict["message"]
    html = form_post(world.user_a, f"/destinations/{dest_id}/test", {}).text
    assert "Connection works</strong> (AGENT_OPENED)" in html


def _assignment_open(world: World, job_id: int) -> int:
    assert world.user_a.post(f"/api/jobs/{job_id}/run").status_code == 201
    r = world.agent_a.post("/api/agent/next_run")
    assert r.status_code == 200, r.text
    return int(r.json()["run"]["run_id"])
