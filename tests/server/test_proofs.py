"""Proofs of restore on the server: the agent reports them for its own runs only, a failed proof
raises the proof-failed alert by email (a real SMTP server) and a passed one clears it, the
screenshot is served to the tenant's users only, and ``verify_boot`` is refused where it cannot run."""

from __future__ import annotations

import base64
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from tests.plugins.alert_receivers import Inbox, smtp_inbox  # noqa: F401
from tests.server.conftest import World


def tiny_png() -> bytes:
    """A real 1x1 PNG (signature, IHDR, IDAT, IEND with their CRCs)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0")) + \
        chunk(b"IEND", b"")


@pytest.fixture
def database_url(tmp_path: Path, _sqlite_template: Path) -> Iterator[str]:
    shutil.copyfile(_sqlite_template, tmp_path / "server.db")
    yield f"sqlite:///{tmp_path / 'server.db'}"


@pytest.fixture
def settings_overrides(smtp_inbox: Inbox) -> dict[str, Any]:  # noqa: F811
    return {"smtp_host": smtp_inbox.host, "smtp_port": smtp_inbox.port, "smtp_sender": "alerts@msp.example"}


def _backup(world: World, job: dict[str, Any], snapshot: str) -> int:
    run = world.user_a.post(f"/api/jobs/{job['id']}/run").json()["id"]
    assert world.agent_a.post("/api/agent/next_run").json()["run"]["run_id"] == run
    r = world.agent_a.post("/api/agent/update_run", json={"run_id": run, "status": "success", "snapshot_id": snapshot})
    assert r.status_code == 200, r.text
    return int(run)


def _report(run_id: int, snapshot: str, verdict: str, reason: str = "", png: bytes | None = None,
            started: str = "2026-12-03T10:00:00Z") -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": run_id, "snapshot_id": snapshot, "kind": "boot", "verdict": verdict, "reason": reason,
        "started_at": started, "finished_at": "2026-12-03T10:01:00Z",
        "checks": [{"name": "boot", "ok": verdict == "passed", "detail": reason or "marker seen"}],
    }
    if png is not None:
        body["screenshot_png"] = base64.b64encode(png).decode()
    return body


def test_failed_proof_alerts_by_email_passed_proof_clears_it(app: FastAPI, world: World, smtp_inbox: Inbox) -> None:  # noqa: F811
    r = world.user_a.post("/api/alerts/channels", json={"kind": "email", "target": "oncall@acme.example",
                                                         "rules": ["proof_failed"]})
    assert r.status_code == 201, r.text
    job = world.job(name="Docs")
    snap = "ab" * 32
    run = _backup(world, job, snap)
    r = world.agent_a.post("/api/agent/report_proof", json=_report(run, snap, "failed", "sector 0 is all zeros"))
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "failed" and r.json()["job_id"] == job["id"]
    assert app.state.alerts.deliver_due() == 1
    (rcpts, msg), = smtp_inbox.messages
    assert rcpts == ["oncall@acme.example"]
    assert "Proof of restore of Docs failed (boot): sector 0 is all zeros" in str(msg["Subject"])
    # the outbox resends after a lost answer: stored once, no second alert
    again = world.agent_a.post("/api/agent/report_proof", json=_report(run, snap, "failed", "sector 0 is all zeros"))
    assert again.json()["id"] == r.json()["id"] and app.state.alerts.deliver_due() == 0

    run2 = _backup(world, job, "cd" * 32)
    ok = world.agent_a.post("/api/agent/report_proof", json=_report(run2, "cd" * 32, "passed", png=tiny_png()))
    assert ok.status_code == 200, ok.text
    assert app.state.alerts.deliver_due() == 1
    assert "CLEARED" in str(smtp_inbox.messages[-1][1]["Subject"])
    listed = world.user_a.get("/api/proofs", params={"job_id": job["id"]}).json()
    assert [p["verdict"] for p in listed] == ["passed", "failed"]
    assert listed[0]["screenshot_url"] == f"/api/proofs/{ok.json()['id']}/screenshot.png"
    assert listed[1]["screenshot_url"] is None


def test_screenshot_and_restore_points_are_served_to_the_tenant_only(world: World) -> None:
    job = world.job()
    run = _backup(world, job, "ef" * 32)
    proof = world.agent_a.post("/api/agent/report_proof", json=_report(run, "ef" * 32, "passed", png=tiny_png()))
    url = proof.json()["screenshot_url"]
    mine = world.user_a.get(url)
    assert mine.status_code == 200 and mine.headers["content-type"] == "image/png" and mine.content == tiny_png()
    assert world.admin.get(url).status_code == 200
    assert world.user_b.get(url).status_code == 404  # another tenant: as if it did not exist
    assert world.user_b.get("/api/proofs").json() == []
    (point,) = world.user_a.get("/api/restore-points", params={"job_id": job["id"]}).json()
    assert (point["run_id"], point["snapshot_id"], point["proof"]["verdict"], point["proof"]["screenshot_url"]) == (
        run, "ef" * 32, "passed", url)
    assert world.user_b.get("/api/restore-points", params={"job_id": job["id"]}).status_code == 404
    assert world.user_b.get("/api/restore-points").json() == []
    world.client.cookies.clear()
    assert world.client.get(url).status_code == 401


def test_an_agent_reports_proofs_of_its_own_backup_runs_only(world: World) -> None:
    job = world.job()
    run = _backup(world, job, "12" * 32)
    other = world.agent_b.post("/api/agent/report_proof", json=_report(run, "12" * 32, "passed"))
    assert other.status_code == 404
    wrong_snap = world.agent_a.post("/api/agent/report_proof", json=_report(run, "34" * 32, "passed"))
    assert wrong_snap.status_code == 422 and "snapshot_id" in wrong_snap.text
    not_png = world.agent_a.post("/api/agent/report_proof", json=_report(run, "12" * 32, "passed", png=b"GIF89a..."))
    assert not_png.status_code == 422 and "not a PNG image" in not_png.text
    world.client.cookies.clear()
    anonymous = world.client.post("/api/agent/report_proof", json=_report(run, "12" * 32, "passed"))
    assert anonymous.status_code == 401


def test_verify_boot_is_refused_where_the_proof_cannot_run(world: World) -> None:
    # world's agents run Windows: an image proof (QEMU, e2fsck) cannot run there
    image = {"name": "C", "engine": "disk_image", "disk_source_volume": "C:", "policy": {"verify_boot": "weekly"}}
    r = world.user_a.post("/api/jobs", json=_job(world, **image))
    assert r.status_code == 422 and "runs Windows" in r.text and "verify_boot" in r.text
    r = world.user_a.post("/api/jobs", json=_job(world, engine="sync", policy={"verify_boot": "daily"}))
    assert r.status_code == 422 and "not sync jobs" in r.text
    r = world.user_a.post("/api/jobs", json=_job(world, policy={"verify_boot": "hourly"}))
    assert r.status_code == 422 and "verify_boot" in r.text
    assert world.user_a.post("/api/jobs", json=_job(world, policy={"verify_boot": "daily"})).status_code == 201


def _job(world: World, **overrides: Any) -> dict[str, Any]:
    from tests.server.conftest import files_job

    body = files_job(world.agent_a.id, **overrides)
    if body.get("engine") == "disk_image":
        body.pop("source_path", None)
    return body
