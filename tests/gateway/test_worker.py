"""Retention, prune and check of a gateway-mode repository run in the server's maintenance worker
(the agent cannot delete): the scheduler queues worker runs, not agent commands; the worker forgets
by the job's policy with the same code the agent uses in direct mode; restic then checks every byte."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from e3backup.api.agent import UpdateRunRequest
from e3backup.api.common import RunStatus
from e3backup.cli.main import main
from e3backup.gateway.worker import MaintenanceWorker
from e3backup.repo.repository import Repository
from e3backup.server.db.models import Command, Job, RepositoryMaintenance, Run
from e3backup.server.services import maintenance as maintenance_svc
from e3backup.server.services import runs as runs_svc
from e3backup.store import open_store
from tests.conftest import FAST_KDF
from tests.gateway.conftest import NOW, GatewayWorld
from tests.helpers import PASSWORD, restic

pytestmark = pytest.mark.restic


def _backup(w: GatewayWorld, url: str, job_id: int, agent_id: int, src: Path) -> Run:
    """A backup through the gateway (as the agent makes it), reported finished to the server."""
    (src / "changing.bin").write_bytes(os.urandom(300_000))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E3BACKUP_PASSWORD", PASSWORD)
        assert main(["-r", url, "--no-cache", "backup", "--host", "pc1", "--tag", f"job:{job_id}", str(src)]) == 0
    store = open_store(url)
    try:
        snap = max(Repository.open(store, PASSWORD.encode()).snapshots(), key=lambda s: s.time)
    finally:
        store.close()
    with w.state.sessions() as s:
        run = Run(tenant_id=s.get(Job, job_id).tenant_id, job_id=job_id, agent_id=agent_id,  # type: ignore[union-attr]
                  kind="backup", trigger="manual", status="running", created_at=NOW)
        s.add(run)
        s.flush()
        runs_svc.apply_update(s, run, UpdateRunRequest.model_validate(
            {"run_id": run.id, "status": RunStatus.SUCCESS, "snapshot_id": snap.id}), NOW)
        s.commit()
        return run


def test_retention_and_prune_run_in_the_worker_and_restic_checks(gateway_world: GatewayWorld, tmp_path: Path) -> None:
    w = gateway_world
    actor = w.agent(w.tenant())
    job_id, _ = w.local_job(actor, "worker", retention={"keep_last": 1})
    url = w.rest_url(job_id, actor.token)
    store = open_store(url)
    Repository.init(store, PASSWORD.encode(), FAST_KDF)
    store.close()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "same.txt").write_bytes(b"kept\n" * 1000)
    worker = MaintenanceWorker(w.state, 60)

    runs = [_backup(w, url, job_id, actor.agent_id, tmp_path / "src") for _ in range(3)]
    with w.state.sessions() as s:  # the successes queued the job's retention for the worker, once
        queued = s.scalars(select(Run).where(Run.job_id == job_id, Run.kind == "maintenance")).all()
        assert [(r.agent_id, r.status, (r.restore or {}).get("mode"), (r.restore or {}).get("source_run_id"))
                for r in queued] == [(None, "queued", "retention", runs[2].id)]
    assert len(worker.tick()) == 1
    with w.state.sessions() as s:
        done = s.scalars(select(Run).where(Run.job_id == job_id, Run.kind == "maintenance")).all()
        assert {r.status for r in done} == {"success"}
        backups = s.scalars(select(Run).where(Run.id.in_([r.id for r in runs])).order_by(Run.id))
        removed = [r.id for r in backups if r.snapshot_removed_at]
        assert removed == [runs[0].id, runs[1].id]  # keep_last 1: the two older snapshots forgotten
    assert len(json.loads(restic(url, "snapshots", "--json").stdout)) == 1

    # the scheduled prune + check of the repository: a worker run, no command to the agent
    with w.state.sessions() as s:
        later = NOW + timedelta(days=30)
        maintenance_svc.ensure_rows(s, NOW, 7, 28)
        created = maintenance_svc.plan(s, later, 7, 28)
        mine = [r for r in created if r.job_id == job_id]
        assert [(r.agent_id, (r.restore or {}).get("mode")) for r in mine] == [(None, "full")]
        assert s.scalar(select(func.count()).select_from(Command).where(Command.job_id == job_id)) == 0
        s.commit()
    assert worker.tick() == [mine[0].id]
    with w.state.sessions() as s:
        run = s.get(Run, mine[0].id)
        assert run is not None and run.status == "success", run.error_summary if run else None
        assert (run.summary or {}).get("check.ok") == 1.0 and (run.summary or {}).get("prune.plan.delete_packs", 0) >= 0
        row = s.scalar(select(RepositoryMaintenance).where(RepositoryMaintenance.last_run_id == run.id))
        assert row is not None and row.last_check_at is not None
    restic(url, "check", "--read-data")
