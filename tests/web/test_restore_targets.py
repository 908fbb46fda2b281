"""The restore form offers what the agent reported (restore folders, allowed devices) and sends a
device as ``target_disk`` (issue 25, bug 3: it always sent ``target_path``, so the agent refused
an allowed device as "outside restore roots")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from e3backup.agent.config import AgentConfig
from e3backup.agent.validate import validate_restore
from e3backup.api.agent import RunAssignment
from e3backup.server.db.models import AuditEvent
from tests.server.conftest import FakeClock, World
from tests.web.conftest import form_post, page, text_of

SNAP = "cd" * 32


def _report(world: World, **targets: Any) -> None:
    body = {"disks": [{"path": "/dev/loop7", "size_bytes": 64 << 20}], "volumes": [], **targets}
    assert world.agent_a.post("/api/agent/report_disks", json=body).status_code == 200


def _image_run(world: World, clock: FakeClock) -> int:
    job = world.job(engine="disk_image", disk_source_volume="/dev/sdb", source_path="/dev/sdb")
    assert world.admin.post(f"/api/jobs/{job['id']}/run").status_code == 201
    claimed = world.agent_a.post("/api/agent/next_run", json={}).json()["run"]
    clock.advance(seconds=60)
    body = {"run_id": claimed["run_id"], "status": "success", "snapshot_id": SNAP, "backup_type": "full"}
    assert world.agent_a.post("/api/agent/update_run", json=body).status_code == 200
    return int(claimed["run_id"])


def _claimed_restore(world: World, location: str) -> RunAssignment:
    run_id = int(location.split("/")[2].split("?")[0])
    run = world.agent_a.post("/api/agent/next_run", params={"run_id": run_id}, json={}).json()["run"]
    return RunAssignment.model_validate(run)


def test_an_allowed_device_picked_in_the_dashboard_passes_the_agents_check(
    world: World, clock: FakeClock, tmp_path: Any
) -> None:
    _report(world, restore_roots=[str(tmp_path)], allowed_devices=["/dev/loop7"])
    run_id = _image_run(world, clock)
    html = page(world.user_a, f"/runs/{run_id}")
    assert '<option value="/dev/loop7"' in html and "64.0 MiB" in text_of(html)
    r = form_post(world.user_a, f"/runs/{run_id}/restore", {"target_kind": "device", "target_disk": "/dev/loop7"})
    assert r.status_code == 303, r.text
    run = _claimed_restore(world, r.headers["location"])
    assert run.restore is not None and "target_path" not in run.restore
    config = AgentConfig(server_url="http://x", agent_token="t", restore_roots=[str(tmp_path)],
                         allowed_devices=["/dev/loop7"])
    req = validate_restore(run, config)  # before the fix: RunRefused "outside this agent's restore roots"
    assert req.target_disk == "/dev/loop7" and req.format == "raw"
    with world.client.app.state.e3.sessions() as s:  # type: ignore[attr-defined]
        entry = s.scalars(select(AuditEvent).where(AuditEvent.action == "restore.queue")).one()
        assert entry.details["target_disk"] == "/dev/loop7" and entry.actor == "alice@acme.example"


def test_a_device_the_agent_does_not_allow_is_refused_naming_the_allowed_ones(world: World, clock: FakeClock) -> None:
    _report(world, restore_roots=["/srv/restores"], allowed_devices=["/dev/loop7"])
    run_id = _image_run(world, clock)
    r = form_post(world.user_a, f"/runs/{run_id}/restore", {"target_kind": "device", "target_disk": "/dev/sda"})
    assert r.status_code == 422 and 'id="target_disk-error"' in r.text
    assert "choose one of this agent&#39;s allowed devices: /dev/loop7" in r.text
    assert world.user_a.get(f"/api/agents/{world.agent_a.id}/commands").json() == []


def test_an_image_to_a_file_goes_into_a_reported_folder(world: World, clock: FakeClock, tmp_path: Any) -> None:
    _report(world, restore_roots=[str(tmp_path)], allowed_devices=[])
    run_id = _image_run(world, clock)
    form = {"target_kind": "file", "target_root": str(tmp_path), "target_sub": "disk.vhdx", "image_format": "vhdx"}
    r = form_post(world.user_a, f"/runs/{run_id}/restore", {**form, "target_sub": "../etc/disk.vhdx"})
    assert r.status_code == 422 and "must not contain &#39;..&#39;" in r.text
    r = form_post(world.user_a, f"/runs/{run_id}/restore", {**form, "target_root": "/etc"})
    assert r.status_code == 422 and f"choose one of this agent&#39;s restore folders: {tmp_path}" in r.text
    r = form_post(world.user_a, f"/runs/{run_id}/restore", form)
    assert r.status_code == 303, r.text
    run = _claimed_restore(world, r.headers["location"])
    config = AgentConfig(server_url="http://x", agent_token="t", restore_roots=[str(tmp_path)])
    req = validate_restore(run, config)
    assert req.target_path == f"{tmp_path}/disk.vhdx"
    assert req.format == "vhdx"


def test_an_agent_that_reported_no_targets_gets_no_form(world: World, clock: FakeClock) -> None:
    run_id = _image_run(world, clock)
    html = page(world.user_a, f"/runs/{run_id}")
    assert 'id="no-targets"' in html and "Restore this snapshot" not in html
    r = form_post(world.user_a, f"/runs/{run_id}/restore", {"target_kind": "file", "target_root": "/srv"})
    assert r.status_code == 422 and "has not reported any restore folder" in r.text


def test_restore_points_per_machine_and_per_job(world: World, clock: FakeClock) -> None:
    _report(world, restore_roots=["/srv/restores"], allowed_devices=["/dev/loop7"])
    image_run = _image_run(world, clock)
    files = world.job()
    assert world.admin.post(f"/api/jobs/{files['id']}/run").status_code == 201
    claimed = world.agent_a.post("/api/agent/next_run", json={}).json()["run"]
    body = {"run_id": claimed["run_id"], "status": "warning", "snapshot_id": "ef" * 32, "backup_type": "incremental",
            "bytes_total": 3 << 20, "files_total": 42}
    assert world.agent_a.post("/api/agent/update_run", json=body).status_code == 200
    agent_html = page(world.user_a, f"/agents/{world.agent_a.id}")
    assert "/srv/restores" in agent_html and "/dev/loop7" in agent_html
    html = page(world.user_a, f"/restore-points?agent_id={world.agent_a.id}")
    rows = html.split("<tr data-snapshot=")[1:]
    assert [r[1:9] for r in rows] == ["efefefef", "cdcdcdcd"]  # newest first
    assert "Incremental" in rows[0] and "3.0 MiB" in rows[0] and ">42<" in rows[0] and "job:" in rows[0]
    assert f"/runs/{claimed['run_id']}/browse" in rows[0]
    assert "Full" in rows[1] and "<code>/dev/sdb</code>" in rows[1] and f"/runs/{image_run}/browse" in rows[1]
    only_job = page(world.user_a, f"/restore-points?job_id={files['id']}")
    assert only_job.count("<tr data-snapshot=") == 1 and f"/runs/{image_run}" not in only_job
    assert world.user_b.get(f"/restore-points?agent_id={world.agent_a.id}", headers={"Accept": "text/html"}
                            ).status_code == 404
    assert "<tr data-snapshot=" not in page(world.user_b, "/restore-points")


def test_files_picked_in_an_image_reach_the_agent_as_an_image_files_restore(
    world: World, clock: FakeClock, tmp_path: Any
) -> None:
    from e3backup.agent.engines import IMAGE_FILES_RESTORE, RESTORE, pick
    from e3backup.agent.validate import RunRefused
    from e3backup.api.common import Engine, RunKind

    _report(world, restore_roots=[str(tmp_path)], allowed_devices=["/dev/loop7"])
    run_id = _image_run(world, clock)
    form = {"base": "2-data", "paths": ["2-data/report.txt", "2-data/docs"], "agent_id": str(world.agent_a.id),
            "target_root": str(tmp_path), "target_sub": "t", "conflict": "skip"}
    r = form_post(world.user_a, f"/runs/{run_id}/browse/restore", form)
    assert r.status_code == 303, r.text
    run = _claimed_restore(world, r.headers["location"])
    config = AgentConfig(server_url="http://x", agent_token="t", restore_roots=[str(tmp_path)],
                         allowed_devices=["/dev/loop7"])
    req = validate_restore(run, config)
    assert (req.snapshot_id, req.target_path, req.paths) == (f"{SNAP}:2-data", f"{tmp_path}/t",
                                                               ["/2-data/report.txt", "/2-data/docs"])
    assert pick(RunKind.RESTORE, Engine.DISK_IMAGE, "win32", req) is IMAGE_FILES_RESTORE  # no device: any OS
    assert pick(RunKind.RESTORE, Engine.DISK_IMAGE, "linux", None) is RESTORE[Engine.DISK_IMAGE]
    for extra in ({"target_disk": "/dev/loop7"}, {"format": "vhdx"}):
        bad = run.model_copy(update={"restore": {**(run.restore or {}), **extra}})
        with pytest.raises(RunRefused, match=r"restore.paths: picked files of an image restore into a folder"):
            validate_restore(bad, config)
    outside = run.model_copy(update={"restore": {**(run.restore or {}), "target_path": "/etc"}})
    with pytest.raises(RunRefused, match="outside this agent's restore roots"):
        validate_restore(outside, config)
