"""Restore points: every snapshot of a machine or of a job, newest first, with what it holds and
whether its proof of restore passed.

A restore point is a finished backup run with a snapshot (success or warning) that retention has
not forgotten. Its time, type (Full/Incremental), size and file count come from the run; an
image's disks from its job and the run's per-disk snapshots, its partitions (number, name, file
system, size) from the backup's completion event; its tags are the ones the engines
write (``job:<id>``); its proof from the proofs of that run. Nothing is read from the repository,
so the list is as fast as the run list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from e3backup.api.common import RunKind
from e3backup.events import EventCode
from e3backup.server.db.models import Job, Proof, Run, RunEvent
from e3backup.server.services import proofs as proofs_svc
from e3backup.server.services.recovery_codes import RESTORABLE

LIMIT = 500


def query(agent_id: int | None = None, job_id: int | None = None, limit: int = LIMIT) -> Select[Run]:
    """The restore points' runs (the caller narrows it to the tenants in view)."""
    q = (select(Run).where(Run.kind == RunKind.BACKUP.value, Run.status.in_(RESTORABLE), Run.snapshot_id.is_not(None))
         .where(Run.snapshot_removed_at.is_(None))  # retention forgot it: nothing to restore
         .order_by(Run.id.desc()).limit(limit))
    if agent_id is not None:
        q = q.where(Run.agent_id == agent_id)
    if job_id is not None:
        q = q.where(Run.job_id == job_id)
    return q


def point(
    run: Run, job: Job | None, proof: Proof | None = None, partitions: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    disks: list[str] = []
    if job is not None and job.engine == "disk_image":
        disks = sorted((run.disk_manifests_json or {}).keys()) or [job.disk_source_volume or job.source_path]
    return {
        "run": run,
        "job": job,
        "type": (run.backup_type or "").capitalize() or "—",
        "disks": disks,
        "partitions": partitions or [],
        "tags": [f"job:{run.job_id}"] if run.job_id is not None else [],
        "browsable": job is not None and job.engine in ("files", "disk_image"),
        "proof": proof,
    }


def partitions_by_run(session: Session, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each image run's partitions, from its ``DISK_IMAGE_STREAM_COMPLETED`` event (one query;
    runs from before the event carried them have none)."""
    found: dict[int, list[dict[str, Any]]] = {}
    if not run_ids:
        return found
    rows = session.execute(
        select(RunEvent.run_id, RunEvent.details).where(
            RunEvent.run_id.in_(run_ids), RunEvent.code == EventCode.DISK_IMAGE_STREAM_COMPLETED.value
        )
    )
    for run_id, details in rows:
        parts = (details or {}).get("partitions")
        if isinstance(parts, list):
            found[run_id] = [p for p in parts if isinstance(p, dict)]
    return found


def points(session: Session, runs: list[Run], jobs: dict[int, Job]) -> list[dict[str, Any]]:
    proofs = proofs_svc.by_run(session, [r.id for r in runs])
    images = [r.id for r in runs if r.job_id is not None and r.job_id in jobs and jobs[r.job_id].engine == "disk_image"]
    parts = partitions_by_run(session, images)
    return [point(r, jobs.get(r.job_id) if r.job_id is not None else None, proofs.get(r.id), parts.get(r.id))
            for r in runs]


def public(p: dict[str, Any], hostname: str | None) -> dict[str, Any]:
    """A restore point as the API gives it."""
    run: Run = p["run"]
    job: Job | None = p["job"]
    proof: Proof | None = p["proof"]
    return {
        "run_id": run.id,
        "snapshot_id": run.snapshot_id,
        "time": run.finished_at or run.created_at,
        "tenant_id": run.tenant_id,
        "agent_id": run.agent_id,
        "hostname": hostname,
        "job_id": run.job_id,
        "job_name": job.name if job else None,
        "engine": job.engine if job else None,
        "type": run.backup_type,
        "bytes_total": run.bytes_total,
        "files_total": run.files_total,
        "disks": p["disks"],
        "partitions": p["partitions"],
        "tags": p["tags"],
        "proof": proofs_svc.view(proof).model_dump(mode="json") if proof is not None else None,
    }


__all__ = ["LIMIT", "partitions_by_run", "point", "points", "public", "query"]
