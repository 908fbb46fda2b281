"""Runs: creating, handing out (``next_run``), progress and results, and their views."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from e3backup.api.agent import RunAssignment, RunStatusView, UpdateRunRequest
from e3backup.api.common import BackupType, RunKind, RunStatus
from e3backup.api.jobs import HyperVVMResult, HyperVVMRun
from e3backup.gateway.protocol import repo_path
from e3backup.server.db.models import HyperVVM, Job, Run
from e3backup.server.errors import Conflict, FieldError
from e3backup.server.schemas import RunPublic
from e3backup.server.security import SecretBox
from e3backup.server.services.jobs import destination_with_secrets, share_credentials

log = logging.getLogger(__name__)

FINAL = {s.value for s in RunStatus if s.is_final}


def create_run(
    session: Session,
    job: Job,
    now: datetime,
    trigger: str,
    kind: RunKind = RunKind.BACKUP,
    agent_id: int | None = None,
    restore: dict[str, Any] | None = None,
) -> Run:
    run = Run(
        tenant_id=job.tenant_id,
        job_id=job.id,
        agent_id=agent_id if agent_id is not None else job.agent_id,
        kind=kind.value,
        trigger=trigger,
        status=RunStatus.QUEUED.value,
        created_at=now,
        restore=restore,
    )
    session.add(run)
    session.flush()
    return run


def claim_next_run(
    session: Session, agent_id: int, paused: bool, now: datetime, run_id: int | None, kind: RunKind | None = None
) -> Run | None:
    """The agent's oldest queued run (or the one asked for), marked running.

    The claim is a conditional UPDATE (``status = 'queued'``), so two concurrent calls never hand
    out the same run, on SQLite as on PostgreSQL. The candidates are read without the ORM: an
    idle agent's poll (nearly every call) costs one indexed query.
    """
    query = select(Run.id).where(
        Run.agent_id == agent_id, Run.status == RunStatus.QUEUED.value, Run.job_id.is_not(None)
    )
    if run_id is not None:
        query = query.where(Run.id == run_id)
    if kind is not None:
        query = query.where(Run.kind == kind.value)
    if paused:  # paused: no new backups (restores and maintenance the user asked for still run)
        query = query.where(Run.kind != RunKind.BACKUP.value)
    for candidate in session.connection().execute(query.order_by(Run.id).limit(20)).scalars().all():
        if _refused_by_quota(session, candidate, now):
            continue
        claimed = session.execute(
            update(Run)
            .where(Run.id == candidate, Run.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.RUNNING.value, started_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            run = session.get(Run, candidate, populate_existing=True)
            assert run is not None
            log.info("run %s handed to agent %s", run.id, agent_id)
            return run
    return None


def _refused_by_quota(session: Session, run_id: int, now: datetime) -> bool:
    """A queued backup whose destination or tenant is over quota ends FAILED instead of running."""
    from e3backup.server.services import alerts, quotas  # they build on this module

    run = session.get(Run, run_id)
    if run is None or run.kind != RunKind.BACKUP.value or run.job_id is None:
        return False
    job = session.get(Job, run.job_id)
    reason = quotas.over_quota(session, job) if job is not None else None
    if reason is None:
        return False
    ended = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED.value)
        .values(status=RunStatus.FAILED.value, finished_at=now, error_summary=reason)
        .execution_options(synchronize_session=False)
    )
    if ended.rowcount == 1:  # type: ignore[attr-defined]
        session.refresh(run)
        log.info("run %s refused: %s", run_id, reason)
        alerts.on_run_finished(session, run, now)
    return True


def _hyperv_vms(session: Session, job: Job) -> list[HyperVVMRun]:
    names = (job.hyperv_config or {}).get("vms", [])
    rows = {r.vm_name: r for r in session.scalars(select(HyperVVM).where(HyperVVM.job_id == job.id))}
    return [
        HyperVVMRun(
            vm_id=rows[n].id,
            vm_name=n,
            vm_guid=rows[n].vm_guid,
            last_checkpoint_id=rows[n].last_checkpoint_id,
            last_rct_ids=rows[n].last_rct_ids,
        )
        for n in names
        if n in rows
    ]


@dataclass(frozen=True)
class GatewayAccess:
    """How the caller of ``next_run``/``get_run`` reaches the repository gateway: the base URL
    (the server's, as the caller reached it, or ``gateway_url``) and its gateway token."""

    base_url: str
    token: str


def run_destination(box: SecretBox, job: Job, gateway: GatewayAccess | None) -> dict[str, Any]:
    """The destination a run carries: the storage with its credentials (direct mode), or the
    gateway's URL and the caller's token with only the repository password (gateway mode)."""
    dest = destination_with_secrets(box, job)
    if job.storage_mode != "gateway":
        return dest
    if gateway is None:
        raise Conflict(f"job {job.id} writes through the repository gateway, which this server does not serve "
                       "(gateway_enabled is off)")
    url = gateway.base_url.rstrip("/") + repo_path(job.id)
    return {"type": "gateway", "url": url, "token": gateway.token, "repository_password": dest["repository_password"]}


def assignment(session: Session, box: SecretBox, run: Run, gateway: GatewayAccess | None = None) -> RunAssignment:
    job = session.get(Job, run.job_id) if run.job_id is not None else None
    if job is None:
        raise Conflict(f"run {run.id}: its job was deleted")
    parent = session.scalar(
        select(Run.snapshot_id)
        .where(
            Run.job_id == job.id,
            Run.kind == RunKind.BACKUP.value,
            Run.status.in_((RunStatus.SUCCESS.value, RunStatus.WARNING.value)),
            Run.snapshot_id.is_not(None),
        )
        .order_by(Run.finished_at.desc(), Run.id.desc())
        .limit(1)
    )
    return RunAssignment.model_validate(
        {
            "run_id": run.id,
            "job_id": job.id,
            "job_name": job.name,
            "kind": run.kind,
            "engine": job.engine,
            "source_path": job.source_path,
            "source_paths": job.source_paths,
            "exclude": job.exclude,
            "destination": run_destination(box, job, gateway),
            "policy": job.policy,
            "retention": job.retention,
            "disk_source_volume": job.disk_source_volume,
            "disk_image_format": job.disk_image_format,
            "disk_temp_dir": job.disk_temp_dir,
            "hyperv_config": job.hyperv_config,
            "hyperv_vms": _hyperv_vms(session, job) if job.engine == "hyperv" else [],
            "parent_snapshot_id": parent,
            "share_credentials": share_credentials(box, job),
            "restore": run.restore,
        }
    )


def _apply_hyperv_results(session: Session, run: Run, results: list[HyperVVMResult], now: datetime) -> None:
    if run.job_id is None:
        return
    rows = list(session.scalars(select(HyperVVM).where(HyperVVM.job_id == run.job_id)))
    for i, result in enumerate(results):
        row = next(
            (
                r
                for r in rows
                if (result.vm_id is not None and r.id == result.vm_id) or r.vm_name == result.vm_name
            ),
            None,
        )
        if row is None:
            raise FieldError(f"hyperv_results.{i}", f"no VM {result.vm_id or result.vm_name!r} in this job")
        if result.error or run.status not in (RunStatus.SUCCESS.value, RunStatus.WARNING.value):
            continue  # the chain advances only on a VM that was backed up
        if result.vm_guid:
            row.vm_guid = result.vm_guid
        row.last_checkpoint_id = result.checkpoint_id
        row.last_rct_ids = dict(result.rct_ids)
        row.last_backup_type = result.backup_type.value if result.backup_type else None
        row.last_backup_at = now


def apply_update(session: Session, run: Run, req: UpdateRunRequest, now: datetime) -> Run:
    changes = req.model_dump(exclude_unset=True, exclude={"run_id"})
    if run.status in FINAL:
        new_status = changes.get("status")
        if new_status is not None and RunStatus(new_status).value != run.status:
            raise Conflict(f"run {run.id} already finished as {run.status}")
        return run  # a resent final update changes nothing
    for name in (
        "progress_pct",
        "bytes_total",
        "bytes_processed",
        "bytes_uploaded",
        "files_total",
        "files_processed",
        "speed_bytes_per_sec",
        "eta_seconds",
        "snapshot_id",
        "error_summary",
    ):
        if name in changes:
            setattr(run, name, changes[name])
    if req.backup_type is not None:
        run.backup_type = req.backup_type.value
    if req.disk_manifests_json is not None:
        run.disk_manifests_json = dict(req.disk_manifests_json)
    if req.sync_result is not None:
        run.sync_result = req.sync_result.model_dump(mode="json")
    if req.summary is not None:
        run.summary = dict(req.summary)
    if req.snapshots_removed:
        mark_snapshots_removed(session, run.tenant_id, req.snapshots_removed, now)
    if req.status is not None:
        run.status = req.status.value
        if req.status is RunStatus.RUNNING and run.started_at is None:
            run.started_at = now
        if req.status.is_final:
            run.finished_at = now
            from e3backup.server.services import maintenance  # it builds on this module

            if run.kind == RunKind.MAINTENANCE.value:
                maintenance.finished(session, run, now)
            elif run.kind == RunKind.BACKUP.value and req.status in (RunStatus.SUCCESS, RunStatus.WARNING):
                maintenance.queue_retention(session, run, now)
            from e3backup.server.services import alerts, quotas  # they build on this module

            alerts.on_run_finished(session, run, now)
            job = session.get(Job, run.job_id) if run.job_id is not None else None
            ok = req.status in (RunStatus.SUCCESS, RunStatus.WARNING)
            if ok and job is not None and run.kind in (RunKind.BACKUP.value, RunKind.MAINTENANCE.value):
                quotas.mark_stale(session, job)  # its repository grew (or shrank): measured again
            if req.status is RunStatus.SUCCESS:
                run.progress_pct = 100.0
                run.eta_seconds = 0
    if req.hyperv_results is not None:
        run.hyperv_results = [r.model_dump(mode="json") for r in req.hyperv_results]
        if run.backup_type is None and req.hyperv_results:
            full = any(r.backup_type is BackupType.FULL for r in req.hyperv_results)
            run.backup_type = (BackupType.FULL if full else BackupType.INCREMENTAL).value
        _apply_hyperv_results(session, run, req.hyperv_results, now)
    return run


def mark_snapshots_removed(session: Session, tenant_id: int, snapshot_ids: list[str], now: datetime) -> None:
    """Runs whose snapshot retention (or maintenance) forgot: no restore is offered from them."""
    for i in range(0, len(snapshot_ids), 500):
        session.execute(
            update(Run)
            .where(
                Run.tenant_id == tenant_id,
                Run.snapshot_id.in_(snapshot_ids[i : i + 500]),
                Run.snapshot_removed_at.is_(None),
            )
            .values(snapshot_removed_at=now)
            .execution_options(synchronize_session=False)
        )


def restorable(run: Run) -> bool:
    """A backup run whose snapshot still exists (its job may be deleted: the snapshot is kept)."""
    return (
        run.kind == RunKind.BACKUP.value
        and run.status in (RunStatus.SUCCESS.value, RunStatus.WARNING.value)
        and bool(run.snapshot_id)
        and run.snapshot_removed_at is None
    )


def status_view(run: Run) -> RunStatusView:
    return RunStatusView.model_validate(run)


def run_public(run: Run) -> RunPublic:
    return RunPublic.model_validate(run)


__all__ = [
    "FINAL",
    "GatewayAccess",
    "apply_update",
    "assignment",
    "claim_next_run",
    "create_run",
    "mark_snapshots_removed",
    "restorable",
    "run_destination",
    "run_public",
    "status_view",
]
