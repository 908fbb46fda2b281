"""Alert rules and incidents: what is wrong, since when, and who is told.

Rules: ``run_failed`` and ``run_warning`` (a job's backup run ended so; cleared by its next
successful run), ``rpo_missed`` (a job's last successful backup is older than its RPO),
``agent_offline`` (a machine silent for more than ``alert_offline_minutes``), ``proof_failed``
(the agent's proof of restore of a job's snapshot failed; cleared by its next passed proof,
``services.proofs``), ``storage_quota`` (a storage destination or tenant near or over its quota:
``services.quotas``). An incident opens once per subject (``job:5``, ``agent:3``) and rule, and
clears once; each of the two moments
becomes one delivery per matching channel (the tenant's own and the MSP's), sent by the worker
in ``alert_delivery``. Run outcomes open and clear incidents in the transaction that records
them; RPO and offline machines are evaluated on the scheduler's tick.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from e3backup.api.common import RunKind, RunStatus
from e3backup.server.db.models import Agent, AlertChannel, AlertDelivery, AlertIncident, Job, Run, Tenant
from e3backup.server.services.fleet import last_successes, policy_rpo_hours, rpo_missed

RULES = {
    "run_failed": "Backup run failed",
    "run_warning": "Backup run ended with warnings",
    "rpo_missed": "No successful backup within the RPO",
    "agent_offline": "Agent offline",
    "proof_failed": "Proof of restore failed",
    "storage_quota": "Storage near or over its quota",
}


def payload(session: Session, incident: AlertIncident, event: str) -> dict[str, Any]:
    """What a delivery says (the webhook's JSON; the email is written from it)."""
    tenant = session.get(Tenant, incident.tenant_id)
    return {
        "event": event,
        "incident_id": incident.id,
        "rule": incident.rule,
        "rule_title": RULES.get(incident.rule, incident.rule),
        "tenant_id": incident.tenant_id,
        "tenant": tenant.name if tenant else "",
        "subject": incident.subject,
        "title": incident.title,
        "details": incident.details,
        "opened_at": incident.opened_at.isoformat(),
        "cleared_at": incident.cleared_at.isoformat() if incident.cleared_at else None,
    }


def channels_for(session: Session, tenant_id: int | None, rule: str | None = None) -> list[AlertChannel]:
    """The enabled channels of a tenant plus the MSP's own (``tenant_id`` None)."""
    query = select(AlertChannel).where(AlertChannel.enabled.is_(True))
    query = query.where(or_(AlertChannel.tenant_id.is_(None), AlertChannel.tenant_id == tenant_id))
    return [c for c in session.scalars(query.order_by(AlertChannel.id)) if rule is None or rule in c.rules]


def _enqueue(session: Session, now: datetime, incident: AlertIncident, event: str) -> None:
    body = payload(session, incident, event)
    for channel in channels_for(session, incident.tenant_id, incident.rule):
        session.add(
            AlertDelivery(
                channel_id=channel.id, incident_id=incident.id, event=event, payload=body,
                status="pending", attempts=0, next_attempt_at=now, created_at=now,
            )
        )


def open_incident(
    session: Session, now: datetime, tenant_id: int, rule: str, subject: str, title: str,
    details: dict[str, Any] | None = None,
) -> AlertIncident | None:
    """Open the incident unless one is open already (then nothing is sent again)."""
    if _open(session, rule, subject):
        return None
    incident = AlertIncident(
        tenant_id=tenant_id, rule=rule, subject=subject, title=title, details=details or {}, opened_at=now
    )
    session.add(incident)
    session.flush()
    _enqueue(session, now, incident, "opened")
    return incident


def clear_incident(session: Session, now: datetime, rule: str, subject: str) -> list[AlertIncident]:
    cleared = _open(session, rule, subject)
    for incident in cleared:
        incident.cleared_at = now
        session.flush()
        _enqueue(session, now, incident, "cleared")
    return cleared


def _open(session: Session, rule: str, subject: str) -> list[AlertIncident]:
    return list(
        session.scalars(
            select(AlertIncident).where(
                AlertIncident.rule == rule, AlertIncident.subject == subject, AlertIncident.cleared_at.is_(None)
            )
        )
    )


def on_run_finished(session: Session, run: Run, now: datetime) -> None:
    """A backup run ended: open or clear its job's run incidents."""
    if run.kind != RunKind.BACKUP.value or run.job_id is None:
        return
    job = session.get(Job, run.job_id)
    name = job.name if job else f"job {run.job_id}"
    subject = f"job:{run.job_id}"
    details = {"run_id": run.id, "job_id": run.job_id, "agent_id": run.agent_id, "error": run.error_summary or ""}
    if run.status == RunStatus.FAILED.value:
        open_incident(session, now, run.tenant_id, "run_failed", subject,
                      f"Backup of {name} failed: {run.error_summary or 'no reason given'}", details)
    elif run.status == RunStatus.WARNING.value:
        clear_incident(session, now, "run_failed", subject)
        open_incident(session, now, run.tenant_id, "run_warning", subject,
                      f"Backup of {name} ended with warnings: {run.error_summary or ''}".rstrip(": "), details)
    elif run.status == RunStatus.SUCCESS.value:
        clear_incident(session, now, "run_failed", subject)
        clear_incident(session, now, "run_warning", subject)


def evaluate(session: Session, now: datetime, offline_after_seconds: float, offline_minutes: float) -> None:
    """The rules that depend on time passing: RPO and offline machines.

    Runs on the leader's every tick, in the process that answers agents, so it reads columns,
    not ORM objects, and for machines only those whose incident could change: silent long enough
    and not yet alerted, or alerted and back. (Built from ``fleet_health`` it loaded every agent
    as an object: with 10,000 agents ~0.5 s of held interpreter lock every 30 s, the slowest
    agent polls' wait.) What counts as offline and as a missed RPO is ``fleet_health``'s.
    """
    is_open = {(rule, subject) for rule, subject in session.execute(
        select(AlertIncident.rule, AlertIncident.subject).where(
            AlertIncident.rule.in_(("agent_offline", "rpo_missed")), AlertIncident.cleared_at.is_(None))
    )}
    _evaluate_offline(session, now, timedelta(seconds=offline_after_seconds), timedelta(minutes=offline_minutes),
                      is_open)
    _evaluate_rpo(session, now, is_open)


def _evaluate_offline(session: Session, now: datetime, offline_after: timedelta, offline_for: timedelta,
                      is_open: set[tuple[str, str]]) -> None:
    # offline (silent past offline_after) for longer than offline_for: silent past the larger
    silent = now - max(offline_after, offline_for)
    for agent_id, tenant_id, hostname, last_seen in session.execute(
        select(Agent.id, Agent.tenant_id, Agent.hostname, Agent.last_seen_at).where(
            Agent.revoked.is_(False), Agent.last_seen_at < silent)
    ):
        if last_seen is not None and ("agent_offline", f"agent:{agent_id}") not in is_open:
            open_incident(
                session, now, tenant_id, "agent_offline", f"agent:{agent_id}",
                f"Agent {hostname} is offline (last seen {last_seen:%Y-%m-%d %H:%M} UTC)",
                {"agent_id": agent_id, "last_seen_at": last_seen.isoformat()})
    alerted = [int(subject.removeprefix("agent:")) for rule, subject in is_open
               if rule == "agent_offline" and subject.removeprefix("agent:").isdigit()]
    if not alerted:
        return
    back = session.execute(select(Agent.id).where(
        Agent.id.in_(alerted), Agent.revoked.is_(False), Agent.last_seen_at >= now - offline_after)).scalars().all()
    for agent_id in back:
        clear_incident(session, now, "agent_offline", f"agent:{agent_id}")


def _evaluate_rpo(session: Session, now: datetime, is_open: set[tuple[str, str]]) -> None:
    last_success = last_successes(session)
    jobs = session.execute(
        select(Job.id, Job.tenant_id, Job.name, Job.policy, Job.created_at, Agent.hostname)
        .join(Agent, Agent.id == Job.agent_id)
        .where(Job.deleted_at.is_(None), Job.enabled.is_(True), Agent.revoked.is_(False))
    )
    for job_id, tenant_id, name, policy, created_at, hostname in jobs:
        subject = f"job:{job_id}"
        since = last_success.get(job_id)
        rpo = policy_rpo_hours(policy)
        if rpo_missed(now, since, created_at, rpo):
            if ("rpo_missed", subject) not in is_open:
                open_incident(session, now, tenant_id, "rpo_missed", subject,
                              f"{name} on {hostname}: no successful backup within {rpo} h",
                              {"job_id": job_id, "last_success_at": since.isoformat() if since else None,
                               "rpo_hours": rpo})
        elif ("rpo_missed", subject) in is_open:
            clear_incident(session, now, "rpo_missed", subject)


__all__ = ["RULES", "channels_for", "clear_incident", "evaluate", "on_run_finished", "open_incident", "payload"]
