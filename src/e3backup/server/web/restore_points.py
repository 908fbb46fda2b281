"""Restore points: every snapshot of a machine or of a job, newest first, with what it holds.

A restore point is a finished backup run with a snapshot (success or warning). Its time, type
(Full/Incremental), size and file count come from the run, whether a proof of restore passed from
the proofs of that run; an image's disks from its job and
the run's per-disk snapshots; its tags are the ones the engines write (``job:<id>``). Nothing is
read from the repository here, so the page is as fast as the run list.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from e3backup.api.common import Id, RunKind
from e3backup.server.db.models import Agent, Job, Run
from e3backup.server.deps import SessionDep, can_see_tenant
from e3backup.server.services import proofs as proofs_svc
from e3backup.server.web.deps import PageDep
from e3backup.server.web.runs import RESTORABLE

router = APIRouter(include_in_schema=False)
LIMIT = 500


def point(run: Run, job: Job | None) -> dict[str, Any]:
    disks: list[str] = []
    if job is not None and job.engine == "disk_image":
        disks = sorted((run.disk_manifests_json or {}).keys()) or [job.disk_source_volume or job.source_path]
    return {
        "run": run,
        "job": job,
        "type": (run.backup_type or "").capitalize() or "—",
        "disks": disks,
        "tags": [f"job:{run.job_id}"] if run.job_id is not None else [],
        "browsable": job is not None and job.engine in ("files", "disk_image"),
    }


@router.get("/restore-points", response_class=HTMLResponse)
def restore_points(page: PageDep, session: SessionDep, agent_id: Id | None = None,
                   job_id: Id | None = None) -> HTMLResponse:
    query = (
        page.scope.where(select(Run), Run.tenant_id)
        .where(Run.kind == RunKind.BACKUP.value, Run.status.in_(RESTORABLE), Run.snapshot_id.is_not(None))
        .where(Run.snapshot_removed_at.is_(None))  # retention forgot it: nothing to restore
        .order_by(Run.id.desc())
        .limit(LIMIT)
    )
    agent = job = None
    if agent_id is not None:
        agent = session.get(Agent, agent_id)
        if agent is None or not can_see_tenant(page.user, agent.tenant_id):
            raise HTTPException(status_code=404, detail=f"agent {agent_id} not found")
        query = query.where(Run.agent_id == agent_id)
    if job_id is not None:
        job = session.get(Job, job_id)
        if job is None or not can_see_tenant(page.user, job.tenant_id):
            raise HTTPException(status_code=404, detail=f"job {job_id} not found")
        query = query.where(Run.job_id == job_id)
    runs = list(session.scalars(query))
    proofs = proofs_svc.by_run(session, [r.id for r in runs])
    jobs = {j.id: j for j in session.scalars(page.scope.where(select(Job), Job.tenant_id))}
    hosts = {a.id: a.hostname for a in session.scalars(page.scope.where(select(Agent), Agent.tenant_id))}
    return page.render(
        "restore_points.html",
        active="runs",
        points=[point(r, jobs.get(r.job_id) if r.job_id is not None else None) for r in runs],
        hosts=hosts,
        proofs=proofs,
        agent=agent,
        job=job,
    )


__all__ = ["point", "router"]
