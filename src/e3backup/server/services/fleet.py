"""Fleet health: for each customer and machine, what needs attention first.

Per job: the last successful backup and its age against the job's RPO (``policy.rpo_hours``,
24 h when unset), failures and warnings of the last 24 hours, the last run's status. Per agent:
online or offline (and for how long), runs queued on it while it is offline. The rows sort by
attention: a failed last run, a missed RPO or an offline machine before warnings, before
healthy ones. A handful of grouped queries, whatever the number of runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer, load_only

from e3backup.api.common import RunKind, RunStatus
from e3backup.server.db.models import Agent, Job, Run, Tenant

DEFAULT_RPO_HOURS = 24
WINDOW = timedelta(hours=24)
OK_STATUSES = (RunStatus.SUCCESS.value, RunStatus.WARNING.value)

# attention levels, highest first
CRITICAL, WARN, OK = 2, 1, 0


def rpo_hours(job: Job) -> int:
    return policy_rpo_hours(job.policy)


def policy_rpo_hours(policy: dict[str, object] | None) -> int:
    """A job's RPO from its policy: ``rpo_hours`` when a positive integer, else 24."""
    value = (policy or {}).get("rpo_hours")
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_RPO_HOURS


def rpo_missed(now: datetime, last_success: datetime | None, created_at: datetime, rpo: int) -> bool:
    """No successful backup within ``rpo`` hours; a job younger than its RPO has not missed it yet."""
    return now - (last_success or created_at) > timedelta(hours=rpo)


def last_successes(session: Session, tenant_ids: list[int] | None = None) -> dict[int | None, datetime]:
    """Each job's last backup that ended successfully or with warnings."""
    query = (
        select(Run.job_id, func.max(Run.finished_at))
        .where(Run.kind == RunKind.BACKUP.value, Run.status.in_(OK_STATUSES))
        .group_by(Run.job_id)
    )
    return dict(session.execute(_scoped(query, tenant_ids, Run.tenant_id)).all())


@dataclass
class JobHealth:
    job: Job
    last_success_at: datetime | None
    last_status: str | None
    rpo_hours: int
    rpo_missed: bool
    failures_24h: int
    warnings_24h: int
    reasons: list[str] = field(default_factory=list)
    attention: int = OK


@dataclass
class AgentHealth:
    agent: Agent
    tenant_name: str
    online: bool
    offline_for: timedelta | None  # None: online, or never seen
    queued_while_offline: int
    jobs: list[JobHealth] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    attention: int = OK

    @property
    def failures_24h(self) -> int:
        return sum(j.failures_24h for j in self.jobs)

    @property
    def warnings_24h(self) -> int:
        return sum(j.warnings_24h for j in self.jobs)

    @property
    def last_success_at(self) -> datetime | None:
        times = [j.last_success_at for j in self.jobs if j.last_success_at is not None]
        return min(times) if times else None  # the oldest of its jobs' last successes


@dataclass
class TenantHealth:
    tenant_id: int
    name: str
    agents: int = 0
    offline: int = 0
    failures_24h: int = 0
    warnings_24h: int = 0
    rpo_missed: int = 0
    attention: int = OK


@dataclass
class Fleet:
    agents: list[AgentHealth]
    tenants: list[TenantHealth]

    @property
    def failures_24h(self) -> int:
        return sum(a.failures_24h for a in self.agents)

    @property
    def warnings_24h(self) -> int:
        return sum(a.warnings_24h for a in self.agents)

    @property
    def rpo_missed(self) -> int:
        return sum(1 for a in self.agents for j in a.jobs if j.rpo_missed)

    @property
    def offline(self) -> int:
        return sum(1 for a in self.agents if not a.online)


def _scoped(query, tenant_ids: list[int] | None, column):  # type: ignore[no-untyped-def]
    return query if tenant_ids is None else query.where(column.in_(tenant_ids))


def fleet_health(
    session: Session, now: datetime, offline_after_seconds: float, tenant_ids: list[int] | None = None
) -> Fleet:
    """The fleet as seen by someone who may see ``tenant_ids`` (None: every tenant)."""
    backup = Run.kind == RunKind.BACKUP.value
    since = now - WINDOW
    # only the columns health needs: a job's JSON settings and an agent's disk report are the
    # bulk of a row, and the overview reads every job and agent in view
    agents = list(
        session.scalars(
            _scoped(select(Agent).where(Agent.revoked.is_(False)), tenant_ids, Agent.tenant_id).options(
                defer(Agent.disks), defer(Agent.engines)
            )
        )
    )
    jobs = list(
        session.scalars(
            _scoped(select(Job).where(Job.deleted_at.is_(None), Job.enabled.is_(True)), tenant_ids, Job.tenant_id)
            .options(load_only(Job.id, Job.tenant_id, Job.agent_id, Job.name, Job.policy, Job.created_at))
        )
    )
    tenants = dict(session.execute(_scoped(select(Tenant.id, Tenant.name), tenant_ids, Tenant.id)).all())
    last_success = last_successes(session, tenant_ids)
    last_ids = select(func.max(Run.id)).where(backup, Run.status.not_in(("queued", "running"))).group_by(Run.job_id)
    last_status = dict(
        session.execute(
            _scoped(select(Run.job_id, Run.status).where(Run.id.in_(last_ids)), tenant_ids, Run.tenant_id)
        )
        .all()
    )
    counts: dict[tuple[int | None, str], int] = {}
    for job_id, status, n in session.execute(
        _scoped(
            select(Run.job_id, Run.status, func.count())
            .where(Run.finished_at >= since, Run.status.in_((RunStatus.FAILED.value, RunStatus.WARNING.value)))
            .group_by(Run.job_id, Run.status),
            tenant_ids,
            Run.tenant_id,
        )
    ):
        counts[(job_id, status)] = n
    queued = dict(
        session.execute(
            _scoped(
                select(Run.agent_id, func.count()).where(Run.status == RunStatus.QUEUED.value).group_by(Run.agent_id),
                tenant_ids,
                Run.tenant_id,
            )
        )
        .all()
    )

    by_agent: dict[int, AgentHealth] = {}
    offline_after = timedelta(seconds=offline_after_seconds)
    for a in agents:
        seen = a.last_seen_at
        online = seen is not None and now - seen <= offline_after
        health = AgentHealth(
            agent=a,
            tenant_name=tenants.get(a.tenant_id, ""),
            online=online,
            offline_for=None if online or seen is None else now - seen,
            queued_while_offline=0 if online else queued.get(a.id, 0),
        )
        if not online:
            health.attention = CRITICAL if seen is not None else WARN
            health.reasons.append("never connected" if seen is None else "offline")
        if health.queued_while_offline:
            health.reasons.append(f"{health.queued_while_offline} run(s) queued while offline")
        by_agent[a.id] = health
    for j in jobs:
        if j.agent_id not in by_agent:
            continue
        jh = _job_health(j, now, last_success.get(j.id), last_status.get(j.id), counts)
        agent = by_agent[j.agent_id]
        agent.jobs.append(jh)
        agent.attention = max(agent.attention, jh.attention)
        agent.reasons.extend(f"{j.name}: {r}" for r in jh.reasons)

    rows = sorted(
        by_agent.values(),
        key=lambda h: (-h.attention, -h.failures_24h, -h.warnings_24h, h.tenant_name, h.agent.hostname),
    )
    per_tenant: dict[int, TenantHealth] = {}
    for h in rows:
        t = per_tenant.setdefault(h.agent.tenant_id, TenantHealth(h.agent.tenant_id, h.tenant_name))
        t.agents += 1
        t.offline += 0 if h.online else 1
        t.failures_24h += h.failures_24h
        t.warnings_24h += h.warnings_24h
        t.rpo_missed += sum(1 for j in h.jobs if j.rpo_missed)
        t.attention = max(t.attention, h.attention)
    tenant_rows = sorted(per_tenant.values(), key=lambda t: (-t.attention, -t.failures_24h, t.name))
    return Fleet(rows, tenant_rows)


def _job_health(
    job: Job,
    now: datetime,
    last_success: datetime | None,
    last_status: str | None,
    counts: dict[tuple[int | None, str], int],
) -> JobHealth:
    rpo = rpo_hours(job)
    missed = rpo_missed(now, last_success, job.created_at, rpo)
    health = JobHealth(
        job=job,
        last_success_at=last_success,
        last_status=last_status,
        rpo_hours=rpo,
        rpo_missed=missed,
        failures_24h=counts.get((job.id, RunStatus.FAILED.value), 0),
        warnings_24h=counts.get((job.id, RunStatus.WARNING.value), 0),
    )
    if last_status == RunStatus.FAILED.value:
        health.attention = CRITICAL
        health.reasons.append("last run failed")
    if missed:
        health.attention = CRITICAL
        health.reasons.append(f"no successful backup within its RPO of {rpo} h")
    if health.attention < CRITICAL and (last_status == RunStatus.WARNING.value or health.warnings_24h):
        health.attention = WARN
        health.reasons.append("warnings")
    return health


__all__ = [
    "DEFAULT_RPO_HOURS", "AgentHealth", "Fleet", "JobHealth", "TenantHealth", "fleet_health", "last_successes",
    "policy_rpo_hours", "rpo_hours", "rpo_missed",
]
