"""A storage destination defined once, written by two jobs through a real agent (#25): both
jobs' snapshots land in its one repository (restic lists them), the quota's stored bytes are
measured from the repository's index (equal to restic's ``stats --mode raw-data``), and a full
destination stops the next backup with the reason."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from e3backup.server.db.models import AlertIncident, RepositoryMaintenance

from .conftest import REPO_PASSWORD, Harness


def _restic(repo: Path, *args: str) -> object:
    out = subprocess.run(["restic", "-r", str(repo), "--no-cache", *args, "--json"],
                         env={**os.environ, "RESTIC_PASSWORD": REPO_PASSWORD}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_two_jobs_share_a_destination_whose_quota_is_measured_and_enforced(harness: Harness, tmp_path: Path) -> None:
    from e3backup.server.services import maintenance, quotas

    agent, _ = harness.make_agent()
    repo = harness.tmp / "shared-repo"
    tenant = harness.api("GET", "/api/tenants").json()[0]
    dest = harness.api("POST", "/api/destinations", json={
        "name": "Shared", "tenant_id": tenant["id"], "quota_bytes": 1 << 30,
        "destination": {"type": "local", "path": str(repo), "repository_password": REPO_PASSWORD},
    }).json()
    runs = []
    for name in ("docs", "mail"):
        src = tmp_path / name
        src.mkdir()
        (src / f"{name}.bin").write_bytes(os.urandom(300_000))
        job = harness.files_job(agent, src, destination=None, destination_id=dest["id"])
        run_id = harness.run_job(job["id"])
        assert agent.poll_once()
        runs.append(harness.finish(agent, run_id))
    assert [r["status"] for r in runs] == ["success", "success"]
    snaps = _restic(repo, "snapshots")
    assert isinstance(snaps, list)
    assert sorted(s["paths"][0] for s in snaps) == [str(tmp_path / "docs"), str(tmp_path / "mail")]

    state = harness.client.app.state.e3  # type: ignore[attr-defined]
    now = state.clock.now()
    with state.sessions() as s:
        maintenance.ensure_rows(s, now, 7, 28)
        s.commit()
    assert quotas.measure_due(state.sessions, state.box, [harness.tmp], now) == 1
    restic = _restic(repo, "stats", "--mode", "raw-data")
    assert isinstance(restic, dict)
    shown = harness.api("GET", f"/api/destinations/{dest['id']}").json()
    assert shown["stored_bytes"] == restic["total_size"] > 600_000

    # a quota below what is stored: the alert opens and the next backup stops with the reason
    harness.api("PATCH", f"/api/destinations/{dest['id']}", json={"quota_bytes": restic["total_size"] - 1})
    with state.sessions() as s:
        quotas.evaluate(s, now)
        s.commit()
        titles = [i.title for i in s.query(AlertIncident).filter(AlertIncident.rule == "storage_quota")]
        assert any("storage destination Shared is full" in t for t in titles), titles
        assert s.query(RepositoryMaintenance).one().measure_needed is False
    r = harness.client.post(f"/api/jobs/{runs[0]['job_id']}/run", headers=harness.admin_headers)
    assert r.status_code == 409 and "storage quota reached: storage destination Shared" in r.text
