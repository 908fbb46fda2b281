"""The technician's controls through the dashboard's forms (#25): edit, disable, clone, apply
as a template, delete a job (confirmed, snapshots kept); cancel a run; rename, pause, revoke and
delete an agent; schedule presets with the next run times."""

from __future__ import annotations

from fastapi import FastAPI

from e3backup.server.db.models import Job
from tests.server.conftest import FakeClock, World, enroll
from tests.web.conftest import form_post, page, text_of


def _job_form(world: World, **extra: str) -> dict[str, str]:
    return {"name": "Docs", "agent_id": str(world.agent_a.id), "engine": "files", "source_paths": "C:\\Data",
            "destination.type": "s3", "destination.endpoint": "https://s3.example.net",
            "destination.bucket": "acme-backups", "destination.access_key_id": "AKIAEXAMPLE",
            "destination.secret_access_key": "s3-SECRET-do-not-leak-4711",
            "destination.repository_password": "repo-PASSWORD-do-not-leak-0815", "schedule.timezone": "UTC",
            "enabled": "on", **extra}


def test_presets_edit_disable_clone_template_and_delete_a_job(app: FastAPI, world: World, clock: FakeClock) -> None:
    r = form_post(world.user_a, "/jobs/new", _job_form(world, **{"schedule.preset": "daily", "schedule.at": "22:30"}))
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].split("/")[2].split("?")[0])
    job = world.user_a.get(f"/api/jobs/{job_id}").json()
    assert job["schedule"]["cron"] == "30 22 * * *"
    text = text_of(page(world.user_a, f"/jobs/{job_id}"))
    assert "2026-03-02 22:30" in text and "2026-03-03 22:30" in text and "2026-03-04 22:30" in text

    bad = form_post(world.user_a, "/jobs/new", _job_form(world, **{"schedule.preset": "hours", "schedule.every": "30"}))
    assert bad.status_code == 422 and "a whole number of hours from 1 to 23" in bad.text

    edit_page = page(world.user_a, f"/jobs/{job_id}/edit")
    assert "s3-SECRET" not in edit_page and 'value="acme-backups"' in edit_page
    form = _job_form(world, name="Docs nightly", **{"schedule.cron": "0 3 * * *"})
    form.pop("destination.secret_access_key")
    form.pop("destination.repository_password")
    r = form_post(world.user_a, f"/jobs/{job_id}/edit", form)
    assert r.status_code == 303, r.text
    job = world.user_a.get(f"/api/jobs/{job_id}").json()
    kept = (job["name"], job["schedule"]["cron"], job["destination"]["has_secret_key"])
    assert kept == ("Docs nightly", "0 3 * * *", True)

    assert form_post(world.user_a, f"/jobs/{job_id}/enabled", {}).status_code == 303
    assert world.user_a.get(f"/api/jobs/{job_id}").json()["enabled"] is False
    assert form_post(world.user_a, f"/jobs/{job_id}/enabled", {"enabled": "on"}).status_code == 303
    assert world.user_a.get(f"/api/jobs/{job_id}").json()["enabled"] is True

    r = form_post(world.user_a, f"/jobs/{job_id}/clone", {})
    copy_id = int(r.headers["location"].split("/")[2].split("?")[0])
    assert world.user_a.get(f"/api/jobs/{copy_id}").json()["name"] == "Docs nightly (copy)"
    other = enroll(world.client, world.enroll_a, "acme-laptop", os="windows")
    r = form_post(world.user_a, f"/jobs/{job_id}/clone", {"agent_ids": str(other.id)})
    assert r.status_code == 303
    names = {j["name"]: j["agent_id"] for j in world.user_a.get("/api/jobs").json()}
    assert names["Docs nightly on acme-laptop"] == other.id
    with app.state.e3.sessions() as session:  # the template's copies can open the repository too
        secrets = {j.destination_secrets for j in session.query(Job)}
        assert len(secrets) == 1

    r = form_post(world.user_a, f"/jobs/{job_id}/delete", {"confirm": "wrong"})
    assert r.headers["location"].endswith("notice=confirm-delete")
    assert world.user_a.get(f"/api/jobs/{job_id}").status_code == 200
    r = form_post(world.user_a, f"/jobs/{job_id}/delete", {"confirm": "Docs nightly"})
    assert r.status_code == 303 and world.user_a.get(f"/api/jobs/{job_id}").status_code == 404
    actions = [e["action"] for e in world.user_a.get("/api/audit", params={"action": "job."}).json()["items"]]
    assert actions[:3] == ["job.delete", "job.clone", "job.clone"]


def test_cancel_a_queued_run_from_its_page(world: World) -> None:
    job = world.job()
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()
    assert "Cancel this run" in page(world.user_a, f"/runs/{run['id']}")
    assert form_post(world.user_a, f"/runs/{run['id']}/cancel", {}).status_code == 303
    assert world.user_a.get(f"/api/runs/{run['id']}").json()["status"] == "cancelled"
    (entry,) = world.user_a.get("/api/audit", params={"action": "run.cancel"}).json()["items"]
    assert (entry["target_id"], entry["actor"]) == (run["id"], "alice@acme.example")


def test_rename_pause_and_delete_an_agent(app: FastAPI, world: World, clock: FakeClock) -> None:
    job = world.job(schedule={"cron": "0 * * * *", "timezone": "UTC"})
    r = form_post(world.user_a, f"/agents/{world.agent_a.id}/update", {"display_name": "Front desk"})
    assert r.status_code == 303
    assert "Front desk" in page(world.user_a, f"/agents/{world.agent_a.id}")
    assert world.user_a.get(f"/api/agents/{world.agent_a.id}").json()["display_name"] == "Front desk"
    assert form_post(world.user_a, f"/agents/{world.agent_a.id}/update", {"paused": "on"}).status_code == 303
    assert world.user_a.post(f"/api/jobs/{job['id']}/run").status_code == 409
    clock.advance(hours=1)
    assert app.state.scheduler.tick() == []  # paused: the schedule makes no run
    assert form_post(world.user_a, f"/agents/{world.agent_a.id}/update", {"paused": "off"}).status_code == 303
    assert world.user_a.post(f"/api/jobs/{job['id']}/run").status_code == 201

    r = form_post(world.user_a, f"/agents/{world.agent_a.id}/delete", {"confirm": "acme-pc"})
    assert r.status_code == 303
    assert world.user_a.get("/api/agents").json() == []
    assert world.agent_a.post("/api/agent/next_run").status_code == 401  # revoked
    assert world.user_a.get(f"/api/jobs/{job['id']}").json()["enabled"] is False
    runs = world.user_a.get("/api/runs", params={"job_id": job["id"]}).json()
    assert [r["status"] for r in runs] == ["cancelled"]
