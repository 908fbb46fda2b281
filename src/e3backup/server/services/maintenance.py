"""Scheduled repository maintenance: prune and check, once per repository, not per job.

Retention (forget) runs on the agent right after every successful backup, by that job's policy
(cheap: snapshot files only). What it leaves behind, data no snapshot uses, is freed by a
**prune**, and a repository is verified by a **check** reading a sample of its packs. Both run
per repository (the destination: several jobs may share one), on a schedule:

- prune every ``maintenance_prune_days`` (7): it takes the repository's exclusive lock (backups
  wait) and, repacking, reads and rewrites packs (S3 traffic); forgotten data costs only storage
  until then, so weekly keeps both the lock windows and the traffic small;
- check every ``maintenance_check_days`` (28), as a ``full`` maintenance (prune with repacking,
  then ``check`` reading 10 % of the packs): it downloads data, so monthly; over a year every
  pack is likely read once.

The shape is a queue any worker holding the repository's credentials can serve: the planner
(:func:`due`, pure) says which repositories are due; :func:`plan` turns that into a
``maintenance`` run. For a direct-mode repository the run goes, with its command, to the agent
of one of the repository's jobs; for a repository behind the gateway (any of its jobs in
gateway mode: those agents may not delete) it is a **worker run** (no agent) that the server's
maintenance worker (``e3backup.gateway.worker``) claims and executes with full rights. After a
gateway-mode backup, :func:`queue_retention` queues the job's retention as a worker run too (in
direct mode the agent applies it itself). :func:`finished` records the outcome when a run ends.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from e3backup.api.common import CommandType, Engine, RunKind, RunStatus
from e3backup.server.db.models import Agent, Job, RepositoryMaintenance, Run
from e3backup.server.services import commands as commands_svc
from e3backup.server.services import runs as runs_svc

ACTIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


def repo_key(job: Job) -> str:
    """One repository, whichever jobs write to it: the tenant and the destination's location."""
    dest = job.destination
    where = {k: dest.get(k) for k in ("type", "endpoint", "bucket", "prefix", "path")}
    if dest.get("type") == "local":
        where["agent"] = job.agent_id  # a local path is per machine
    return hashlib.sha256(json.dumps([job.tenant_id, where], sort_keys=True).encode()).hexdigest()


def describe(job: Job) -> str:
    dest = job.destination
    if dest.get("type") == "s3":
        prefix = str(dest.get("prefix") or "").strip("/")
        return f"s3 {dest.get('endpoint')}/{dest.get('bucket')}" + (f"/{prefix}" if prefix else "")
    return f"local {dest.get('path')}"


@dataclass(frozen=True)
class Due:
    row_id: int
    mode: str  # "quick" (prune) or "full" (prune, repack, check)


def due(now: datetime, rows: list[RepositoryMaintenance]) -> list[Due]:
    """The repositories whose prune or check is due at ``now``."""
    result = []
    for r in rows:
        if r.next_check_at <= now:
            result.append(Due(r.id, "full"))
        elif r.next_prune_at <= now:
            result.append(Due(r.id, "quick"))
    return result


def ensure_rows(
    session: Session, now: datetime, prune_days: float, check_days: float
) -> dict[str, list[Job]]:
    """A schedule row for each repository a job writes to (the first prune one interval after it
    is first seen); returns the jobs by repository key."""
    jobs = session.scalars(
        select(Job).where(Job.deleted_at.is_(None), Job.engine != Engine.SYNC.value).order_by(Job.id)
    ).all()
    by_key: dict[str, list[Job]] = {}
    for job in jobs:
        by_key.setdefault(repo_key(job), []).append(job)
    known = set(session.scalars(select(RepositoryMaintenance.repo_key)))
    for key, group in by_key.items():
        if key not in known:
            session.add(
                RepositoryMaintenance(
                    tenant_id=group[0].tenant_id,
                    repo_key=key,
                    where=describe(group[0]),
                    next_prune_at=now + timedelta(days=prune_days),
                    next_check_at=now + timedelta(days=check_days),
                )
            )
    session.flush()
    return by_key


def plan(session: Session, now: datetime, prune_days: float, check_days: float) -> list[Run]:
    """Queue the maintenance that is due (one run per repository, none while one is active)."""
    by_key = ensure_rows(session, now, prune_days, check_days)
    rows = list(session.scalars(select(RepositoryMaintenance).where(RepositoryMaintenance.repo_key.in_(by_key))))
    created = []
    for d in due(now, rows):
        row = next(r for r in rows if r.id == d.row_id)
        if row.last_run_id is not None:
            last = session.get(Run, row.last_run_id)
            if last is not None and last.status in ACTIVE:
                continue
        payload = {"mode": d.mode, "forget": False}
        gateway_job = behind_gateway(by_key[row.repo_key])
        if gateway_job is not None:
            run = worker_run(session, gateway_job, now, payload, trigger="schedule")
        else:
            job, agent = _worker(session, by_key[row.repo_key])
            if job is None or agent is None:
                continue  # no agent can reach it now; tried again at the next tick
            run = runs_svc.create_run(
                session, job, now, trigger="schedule", kind=RunKind.MAINTENANCE, agent_id=agent.id,
                restore={"type": CommandType.MAINTENANCE.value, **payload},
            )
            commands_svc.queue(session, agent, CommandType.MAINTENANCE, now, payload, run_id=run.id, job_id=job.id)
        row.last_run_id = run.id
        row.next_prune_at = now + timedelta(days=prune_days)
        if d.mode == "full":
            row.next_check_at = now + timedelta(days=check_days)
        created.append(run)
    session.flush()
    return created


def behind_gateway(jobs: list[Job]) -> Job | None:
    """The job whose destination the worker opens when any of the repository's jobs is in gateway
    mode (an enabled one, the most recent first), else None: the agents maintain it."""
    gateway = [j for j in jobs if j.storage_mode == "gateway"]
    return sorted(gateway, key=lambda j: (not j.enabled, -j.id))[0] if gateway else None


def worker_run(session: Session, job: Job, now: datetime, payload: dict[str, object], trigger: str) -> Run:
    """A maintenance run for the server's maintenance worker: no agent, no command."""
    run = runs_svc.create_run(session, job, now, trigger=trigger, kind=RunKind.MAINTENANCE,
                              restore={"type": CommandType.MAINTENANCE.value, **payload})
    run.agent_id = None
    session.flush()
    return run


def queue_retention(session: Session, backup: Run, now: datetime) -> Run | None:
    """After a gateway-mode job's successful backup: its retention, as a worker run (the agent
    cannot forget snapshots through the gateway). None when the job keeps everything."""
    job = session.get(Job, backup.job_id) if backup.job_id is not None else None
    if job is None or job.storage_mode != "gateway" or not job.retention or not backup.snapshot_id:
        return None
    pending = session.scalars(select(Run).where(
        Run.job_id == job.id, Run.kind == RunKind.MAINTENANCE.value, Run.agent_id.is_(None),
        Run.status == RunStatus.QUEUED.value)).all()
    for run in pending:  # one queued retention per job: it applies the policy to every snapshot anyway
        if (run.restore or {}).get("mode") == "retention":
            run.restore = {**(run.restore or {}), "snapshot_id": backup.snapshot_id, "source_run_id": backup.id}
            return run
    return worker_run(session, job, now, {"mode": "retention", "snapshot_id": backup.snapshot_id,
                                          "source_run_id": backup.id}, trigger="retention")


def _worker(session: Session, jobs: list[Job]) -> tuple[Job | None, Agent | None]:
    """The job (and its agent) that serves the repository's maintenance: an enabled job's agent
    that is not revoked, the most recently created first."""
    for job in sorted(jobs, key=lambda j: (not j.enabled, -j.id)):
        agent = session.get(Agent, job.agent_id) if job.agent_id is not None else None
        if agent is not None and not agent.revoked:
            return job, agent
    return None, None


def finished(session: Session, run: Run, now: datetime) -> None:
    """Record a scheduled maintenance run's outcome on its repository's row."""
    row = session.scalar(select(RepositoryMaintenance).where(RepositoryMaintenance.last_run_id == run.id))
    if row is None:
        return
    row.last_status = run.status
    if run.status in (RunStatus.SUCCESS.value, RunStatus.WARNING.value):
        row.last_prune_at = now
        if (run.restore or {}).get("mode") == "full":
            row.last_check_at = now


def for_job(session: Session, job: Job) -> RepositoryMaintenance | None:
    return session.scalar(select(RepositoryMaintenance).where(RepositoryMaintenance.repo_key == repo_key(job)))


__all__ = ["Due", "behind_gateway", "describe", "due", "ensure_rows", "finished", "for_job", "plan", "queue_retention",
           "repo_key", "worker_run"]
