"""The technician's controls: rename, pause, delete agents; clone jobs (also as a template over
many agents). Deleting keeps history: a deleted agent is revoked and hidden, its jobs stop."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from e3backup.api.common import RunStatus
from e3backup.server.db.models import Agent, HyperVVM, Job, Run, User
from e3backup.server.errors import FieldError
from e3backup.server.schemas import AgentUpdate
from e3backup.server.services.jobs import agent_runs


def update_agent(agent: Agent, body: AgentUpdate) -> dict[str, object]:
    """Apply a rename or pause; returns what changed (for the audit log)."""
    changes: dict[str, object] = {}
    if body.display_name is not None:
        name = body.display_name.strip() or None
        changes["display_name"] = name
        agent.display_name = name
    if body.paused is not None:
        changes["paused"] = body.paused
        agent.paused = body.paused
    return changes


def cancel_queued(session: Session, now: datetime, **where: int) -> None:
    query = update(Run).where(Run.status == RunStatus.QUEUED.value)
    for column, value in where.items():
        query = query.where(getattr(Run, column) == value)
    session.execute(query.values(status=RunStatus.CANCELLED.value, finished_at=now))


def delete_agent(session: Session, agent: Agent, now: datetime) -> None:
    """Revoke and hide the agent; its jobs stop (kept, disabled) and its queued runs are cancelled."""
    agent.revoked = True
    agent.deleted_at = now
    for job in session.query(Job).filter(Job.agent_id == agent.id, Job.deleted_at.is_(None)):
        job.enabled = False
        job.next_run_at = None
    cancel_queued(session, now, agent_id=agent.id)


def clone_job(session: Session, user: User, job: Job, agent: Agent, name: str, now: datetime) -> Job:
    """A copy of ``job`` (destination and its sealed secrets included) on ``agent`` of the same
    tenant, created disabled-free but unscheduled until saved: the schedule is copied as is."""
    if agent.tenant_id != job.tenant_id or agent.revoked:
        raise FieldError("agent_ids", f"agent {agent.id} is not an agent of this job's tenant")
    if not agent_runs(agent, job.engine):
        raise FieldError("agent_ids", f"agent {agent.name} cannot run {job.engine} jobs")
    copy = Job(
        tenant_id=job.tenant_id, agent_id=agent.id, name=name, engine=job.engine, source_path=job.source_path,
        source_paths=list(job.source_paths), exclude=list(job.exclude), disk_source_volume=job.disk_source_volume,
        disk_image_format=job.disk_image_format, disk_temp_dir=job.disk_temp_dir,
        hyperv_config=dict(job.hyperv_config) if job.hyperv_config else None, destination=dict(job.destination),
        destination_secrets=job.destination_secrets, destination_id=job.destination_id, schedule_cron=job.schedule_cron,
        schedule_timezone=job.schedule_timezone, retention=dict(job.retention), policy=dict(job.policy),
        enabled=job.enabled, next_run_at=job.next_run_at, created_at=now, updated_at=now,
    )
    session.add(copy)
    session.flush()
    for name_ in (job.hyperv_config or {}).get("vms", []):
        session.add(HyperVVM(job_id=copy.id, vm_name=name_, last_rct_ids={}))
    return copy


__all__ = ["cancel_queued", "clone_job", "delete_agent", "update_agent"]
