"""The dashboard over HTTP, without a browser: who may see which page, forms, the live stream."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.conftest import PASSWORD, FakeClock, World, files_job
from tests.web.conftest import HTML, form_post, page, text_of

PAGES = ["/", "/agents", "/jobs", "/jobs/new", "/runs"]


def _finished_run(world: World, job: dict[str, Any], clock: FakeClock, **update: Any) -> int:
    r = world.admin.post(f"/api/jobs/{job['id']}/run")
    assert r.status_code == 201, r.text
    claimed = world.agent_a.post("/api/agent/next_run", json={}).json()["run"]
    clock.advance(seconds=90)
    body = {"run_id": claimed["run_id"], "status": "success", "snapshot_id": "ab" * 32, **update}
    assert world.agent_a.post("/api/agent/update_run", json=body).status_code == 200
    return int(claimed["run_id"])


def _object_pages(world: World, clock: FakeClock) -> list[str]:
    job = world.job()
    run_id = _finished_run(world, job, clock)
    agent = world.agent_a.id
    return [
        f"/agents/{agent}",
        f"/agents/{agent}/disk-choices",
        f"/jobs/{job['id']}",
        f"/runs/{run_id}",
        f"/runs/{run_id}/live",
        f"/runs/{run_id}/events/stream",
    ]


def test_anonymous_visitors_get_the_login_form(world: World, clock: FakeClock) -> None:
    client = world.client
    for url in [*PAGES, *_object_pages(world, clock)[::2]]:
        client.cookies.clear()
        r = client.get(url, headers=HTML, follow_redirects=False)
        assert r.status_code == 303, url
        assert r.headers["location"] == ("/login" if url == "/" else f"/login?next={url}")
    client.cookies.clear()
    r = client.get("/", headers=HTML)  # follows to the form
    assert r.status_code == 200 and 'name="password"' in r.text and "<label" in r.text
    # scripts get a 401, not a form
    client.cookies.clear()
    assert client.get(_object_pages(world, clock)[4]).status_code == 401


def test_other_tenants_objects_answer_404_on_every_page(world: World, clock: FakeClock) -> None:
    urls = _object_pages(world, clock)
    for url in urls:
        assert world.user_a.get(url, headers=HTML if "live" not in url else {}).status_code == 200, url
        r = world.user_b.get(url, headers=HTML)
        assert r.status_code == 404, url
        assert "acme" not in r.text.lower()
    run_id = urls[3].rsplit("/", 1)[1]
    job_id = urls[2].rsplit("/", 1)[1]
    assert form_post(world.user_b, f"/runs/{run_id}/restore", {"target_path": "/x"}).status_code == 404
    assert form_post(world.user_b, f"/jobs/{job_id}/run", {}).status_code == 404
    r = form_post(world.user_b, f"/agents/{world.agent_a.id}/disk-choices", {})
    assert r.status_code in (404, 405)


def test_tenant_users_see_only_their_tenant_and_cannot_switch(world: World) -> None:
    world.job()
    world.job(owner=world.user_b, name="Globex files")
    for url in PAGES:
        html = page(world.user_b, url)
        assert "acme" not in html.lower(), url
        assert "Documents" not in html
    assert "gx-srv" in page(world.user_b, "/agents")
    assert "Globex files" in page(world.user_b, "/jobs")
    assert 'id="tenant-switch"' not in page(world.user_b, "/")
    assert form_post(world.user_b, "/tenant", {"tenant_id": str(world.tenant_a["id"])}).status_code == 403
    # a forged tenant cookie changes nothing for a tenant user
    r = world.user_b.get("/agents", headers={**HTML, "Cookie": world.user_b.headers["Cookie"] + "; e3_tenant=1"})
    assert "acme-pc" not in r.text and "gx-srv" in r.text


def test_admin_tenant_switcher(world: World) -> None:
    html = page(world.admin, "/agents")
    assert "acme-pc" in html and "gx-srv" in html and 'id="tenant-switch"' in html
    r = form_post(world.admin, "/tenant", {"tenant_id": str(world.tenant_b["id"]), "next": "/agents"})
    assert r.status_code == 303 and r.headers["location"] == "/agents"
    cookie = r.cookies["e3_tenant"]
    scoped = world.admin.get(
        "/agents", headers={**HTML, "Cookie": world.admin.headers["Cookie"] + f"; e3_tenant={cookie}"}
    )
    assert "gx-srv" in scoped.text and "acme-pc" not in scoped.text
    r = form_post(world.admin, "/tenant", {"tenant_id": "", "next": "//evil.example"})
    assert r.headers["location"] == "/"
    assert form_post(world.admin, "/tenant", {"tenant_id": "1"}, csrf=False).status_code == 403


def test_empty_states_tell_what_to_do_next(app, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    from e3backup.server.services import users

    state = app.state.e3
    with state.sessions() as s:
        tenant = users.create_tenant(s, "Initech", state.clock.now())
        users.create_user(s, state.passwords, state.clock.now(), "peter@initech.example", PASSWORD, False, tenant.id)
        s.commit()
    from tests.server.conftest import login

    peter = login(client, "peter@initech.example")
    overview = text_of(page(peter, "/"))
    assert "No agents yet" in overview and "e3backup agent enroll --server http://testserver" in overview
    r = form_post(peter, "/enrollment-token", {})
    assert r.status_code == 200
    command = re.search(r">(e3backup agent enroll [^<]+)</textarea>", r.text)
    assert command, r.text
    # the token is not on the command line (shell history, ps): the command asks for it
    assert command.group(1) == "e3backup agent enroll --server http://testserver"
    shown = re.search(r'id="enroll-token"[^>]*value="(e3e_[^"]+)"', r.text)
    assert shown, r.text
    token = shown.group(1)
    enrolled = client.post(
        "/api/agent/enroll", json={"enrollment_token": token, "hostname": "initech-1", "os": "linux"}
    )
    assert enrolled.status_code == 201
    assert "No backup jobs yet" in text_of(page(peter, "/jobs"))
    assert "No runs yet" in text_of(page(peter, "/runs"))


def test_wizard_shows_field_errors_then_creates_through_the_jobs_rules(world: World) -> None:
    form = {
        "name": "Server disk",
        "agent_id": str(world.agent_a.id),
        "engine": "disk_image",
        "disk_source_volume": "",
        "disk_image_format": "vhdx",
        "source_paths": "C:\\ignored because the engine is disk_image",
        "destination.type": "s3",
        "destination.endpoint": "https://s3.example.net",
        "destination.bucket": "Bad_Bucket",
        "destination.access_key_id": "AK",
        "destination.secret_access_key": "sk",
        "destination.repository_password": "long enough pw",
        "policy.disk_image_cbt": "on",
        "enabled": "on",
    }
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 422
    assert 'id="destination-bucket-error"' in r.text and 'aria-invalid="true"' in r.text
    form["destination.bucket"] = "backups-acme"
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 422
    assert 'id="disk_source_volume-error"' in r.text and "required for disk_image jobs" in r.text
    assert 'value="Server disk"' in r.text  # what was typed is kept
    form["disk_source_volume"] = "C:"
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].split("/")[2].split("?")[0])
    job = world.user_a.get(f"/api/jobs/{job_id}").json()
    assert job["engine"] == "disk_image" and job["disk_source_volume"] == "C:" and job["source_path"] == "C:"
    assert job["policy"]["disk_image_cbt"] is True and job["policy"]["disk_image_strict_read_errors"] is None
    # the wizard cannot place a job on another tenant's agent
    r = form_post(world.user_a, "/jobs/new", {**form, "agent_id": str(world.agent_b.id)})
    assert r.status_code == 422 and 'id="agent_id-error"' in r.text
    assert form_post(world.user_a, "/jobs/new", form, csrf=False).status_code == 403


def test_run_page_restore_and_chart(world: World, clock: FakeClock) -> None:
    job = world.job()
    first = _finished_run(world, job, clock, backup_type="full", bytes_total=5 << 30, bytes_processed=5 << 30)
    second = _finished_run(world, job, clock, backup_type="incremental", bytes_total=5 << 30)
    html = page(world.user_a, f"/jobs/{job['id']}")
    assert html.count('class="pt pt-success"') == 4  # two runs, two charts
    run_html = text_of(page(world.user_a, f"/runs/{second}"))
    assert "Incremental" in run_html and "5.0 GiB" in run_html
    assert "Full" in text_of(page(world.user_a, f"/runs/{first}"))
    world.agent_a.post("/api/agent/report_disks", json={"restore_roots": ["D:\\Restore", "E:\\R"]})
    r = form_post(world.user_a, f"/runs/{second}/restore", {"target_root": "C:\\Windows"})
    assert r.status_code == 422 and 'id="target_root-error"' in r.text
    r = form_post(world.user_a, f"/runs/{second}/restore", {"target_root": "D:\\Restore", "target_sub": "ticket 42"})
    assert r.status_code == 303
    commands = world.user_a.get(f"/api/agents/{world.agent_a.id}/commands").json()
    assert commands[0]["type"] == "restore"
    assert commands[0]["payload"]["snapshot_id"] == "ab" * 32
    assert commands[0]["payload"]["target_path"] == "D:\\Restore\\ticket 42"
    assert r.headers["location"] == f"/runs/{commands[0]['run_id']}?notice=restore-queued"


def test_event_stream_sends_progress_and_meanings_then_ends(world: World, clock: FakeClock) -> None:
    world.client.app.state.web_stream_interval = 0.01  # type: ignore[attr-defined]
    job = world.job()
    assert world.admin.post(f"/api/jobs/{job['id']}/run").status_code == 201
    run_id = world.agent_a.post("/api/agent/next_run", json={}).json()["run"]["run_id"]
    world.agent_a.post("/api/agent/update_run", json={"run_id": run_id, "progress_pct": 40.0, "backup_type": "full"})
    event = {"seq": 1, "code": "STORAGE_TLS_FAILED", "message": "x509", "ts": datetime.now(UTC).isoformat()}
    world.agent_a.post("/api/agent/push_events", json={"run_id": run_id, "events": [event]})
    world.agent_a.post("/api/agent/update_run", json={"run_id": run_id, "status": "failed"})
    r = world.user_a.get(f"/runs/{run_id}/events/stream")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "event: update" in r.text and "Check the certificate" in r.text
    assert r.text.rstrip().splitlines()[-2] == "event: end"
    assert world.user_b.get(f"/runs/{run_id}/events/stream").status_code == 404


@pytest.mark.parametrize("url", ["/setup", "/login"])
def test_pre_login_forms_are_pages(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 200 and "<label" in r.text and 'name="csrf_token"' in r.text


def test_static_files_are_served(client: TestClient) -> None:
    assert client.get("/static/app.css").status_code == 200
    assert "EventSource" in client.get("/static/app.js").text


def test_files_job_via_wizard_defaults(world: World) -> None:
    html = page(world.user_a, "/jobs/new")
    for label in ("Files", "Disk Image", "Hyper-V", "Sync"):
        assert f">{label}</label>" in html
    assert files_job  # the API's own helper stays the reference shape


def test_wizard_creates_a_sync_job_whose_pages_show_the_mirror(world: World, clock: FakeClock) -> None:
    form = {
        "name": "Share mirror", "agent_id": str(world.agent_a.id), "engine": "sync",
        "source_paths": "/srv/share\n/home", "exclude": "*.tmp",
        "destination.type": "s3", "destination.endpoint": "https://s3.example.net",
        "destination.bucket": "mirror-acme", "destination.prefix": "pc1/",
        "destination.access_key_id": "AK", "destination.secret_access_key": "sk",
        "destination.repository_password": "long enough pw",
        "policy.sync_compare": "checksum", "policy.sync_max_delete": "101", "policy.limit_upload": "500",
        "enabled": "on",  # policy.sync_delete unchecked: keep what is gone from the source
    }
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 422 and 'id="policy-sync_max_delete-error"' in r.text
    form["policy.sync_max_delete"] = "20"
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].split("/")[2].split("?")[0])
    job = world.user_a.get(f"/api/jobs/{job_id}").json()
    assert job["engine"] == "sync" and job["source_paths"] == ["/srv/share", "/home"]
    p = job["policy"]
    assert (p["sync_delete"], p["sync_compare"], p["sync_max_delete"], p["limit_upload"]) == (
        False, "checksum", 20, 500)
    job_html = text_of(page(world.user_a, f"/jobs/{job_id}"))
    assert "A sync job keeps no snapshots" in job_html and "bucket mirror-acme under the prefix pc1/" in job_html

    result = {"destination": "s3:https://s3.example.net/mirror-acme/pc1", "files_new": 3, "files_changed": 2,
              "files_transferred": 5, "files_unchanged": 40, "files_deleted": 0, "files_kept": 1,
              "bytes_transferred": 3 << 20, "source_files": 45, "source_bytes": 9 << 20, "error_count": 1,
              "errors": ["/srv/share/locked.xlsx: Permission denied"]}
    run_id = _finished_run(world, {"id": job_id}, clock, status="warning", snapshot_id=None, sync_result=result)
    html = text_of(page(world.user_a, f"/runs/{run_id}"))
    assert "5 files (3 new, 2 changed), 3.0 MiB" in html
    assert "1 gone from the source kept (policy)" in html and "/srv/share/locked.xlsx: Permission denied" in html
    assert "Restore this snapshot" not in html and "A sync job keeps no snapshots" in html
    assert world.user_a.get(f"/api/runs/{run_id}").json()["sync_result"]["files_unchanged"] == 40
