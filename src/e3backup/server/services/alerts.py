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
from e3backup.server.db.models import AlertChannel, AlertDelivery, AlertIncident, Job, Run, Tenant
from e3backup.server.services.fleet import fleet_health

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

    The open incidents of these rules are read once: a subject whose state did not change costs
    no query (with 20,000 agents, one query per agent per tick was most of the leader's work).
    """
    fleet = fleet_health(session, now, offline_after_seconds)
    is_open = set(session.execute(
        select(AlertIncident.rule, AlertIncident.subject).where(
            AlertIncident.rule.in_(("agent_offline", "rpo_missed")), AlertIncident.cleared_at.is_(None))
    ).tuples())
    for health in fleet.agents:
        agent, subject = health.agent, f"agent:{health.agent.id}"
        if health.offline_for is not None and health.offline_for > timedelta(minutes=offline_minutes):
            if ("agent_offline", subject) not in is_open:
                open_incident(
                    session, now, agent.tenant_id, "agent_offline", subject,
                    f"Agent {agent.hostname} is offline (last seen {agent.last_seen_at:%Y-%m-%d %H:%M} UTC)",
                    {"agent_id": agent.id, "last_seen_at": agent.last_seen_at.isoformat()
                     if agent.last_seen_at else None})
        elif health.online and ("agent_offline", subject) in is_open:
            clear_incident(session, now, "agent_offline", subject)
        for jh in health.jobs:
            subject = f"job:{jh.job.id}"
            if jh.rpo_missed:
                if ("rpo_missed", subject) in is_open:
                    continue
                since = jh.last_success_at.isoformat() if jh.last_success_at else None
                open_incident(session, now, jh.job.tenant_id, "rpo_missed", subject,
                              f"{jh.job.name} on {agent.hostname}: no successful backup within {jh.rpo_hours} h",
                              {"job_id": jh.job.id, "last_success_at": since, "rpo_hours": jh.rpo_hours})
            elif ("rpo_missed", subject) in is_open:
                clear_incident(session, now, "rpo_missed", subject)


__all__ = ["RULES", "channels_for", "clear_incident", "evaluate", "on_run_finished", "open_incident", "payload"]
