"""Storage quotas: per storage destination and per tenant, on stored bytes after dedup.

Stored bytes are read from each repository's index (``usage.stored``: what restic's ``stats
--mode raw-data`` counts) and kept on the repository's maintenance row; a repository is measured
again after each successful backup or maintenance run into it (the alert worker's tick, outside
any request). A destination's figure is the sum over its repositories (a folder destination is
one repository per agent); a tenant's, over all of its repositories. A repository the server
cannot read (a folder outside ``browse_local_roots``) is not measured and says why.

At ``quota_warn_percent`` (80 %) the ``storage_quota`` alert opens for the destination or
tenant; at 100 % a second incident opens ("full") and new backups stop: a backup run queued for
a job over quota ends FAILED with the reason when the agent would claim it, and "Run now" is
refused with it. Both incidents clear when usage falls back (a prune, a larger quota).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from e3backup.api.common import Engine
from e3backup.server.db.models import Job, RepositoryMaintenance, StorageDestination, Tenant
from e3backup.server.errors import Conflict
from e3backup.server.security import SecretBox
from e3backup.server.services import alerts
from e3backup.server.services.maintenance import repo_key
from e3backup.server.services.repository_access import RepoRef, open_job_repository
from e3backup.server.services.usage import stored

log = logging.getLogger(__name__)


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def mark_stale(session: Session, job: Job) -> None:
    """The job's repository changed: measure it again at the next tick."""
    row = session.scalar(select(RepositoryMaintenance).where(RepositoryMaintenance.repo_key == repo_key(job)))
    if row is not None:
        row.measure_needed = True


def measure_due(sessions: sessionmaker[Session], box: SecretBox, local_roots: list[Path], now: datetime) -> int:
    """Measure every repository marked stale; returns how many were read."""
    with sessions() as session:
        rows = {
            r.repo_key: r.id
            for r in session.scalars(
                select(RepositoryMaintenance).where(RepositoryMaintenance.measure_needed.is_(True))
            )
        }
        if not rows:
            return 0
        refs: dict[int, RepoRef] = {}
        for job in session.scalars(select(Job).where(Job.engine != Engine.SYNC.value).order_by(Job.id.desc())):
            row_id = rows.get(repo_key(job))
            if row_id is not None and row_id not in refs:
                refs[row_id] = RepoRef.of(job)
    for row_id, ref in refs.items():
        size: int | None = None
        error: str | None = None
        try:
            with open_job_repository(box, ref, local_roots) as repo:
                size = stored(repo)[0]
        except Conflict as e:
            error = str(e)
            log.info("repository of job %s not measured: %s", ref.job_id, error)
        with sessions() as session:
            row = session.get(RepositoryMaintenance, row_id)
            if row is None:
                continue
            if size is not None:
                row.stored_bytes = size
            row.measure_error = error
            row.measured_at = now
            row.measure_needed = False
            session.commit()
    return len(refs)


def _sum(rows: Iterable[RepositoryMaintenance]) -> int | None:
    measured = [r.stored_bytes for r in rows if r.stored_bytes is not None]
    return sum(measured) if measured else None


def destination_stored(session: Session, dest: StorageDestination) -> int | None:
    keys = {repo_key(j) for j in session.scalars(select(Job).where(Job.destination_id == dest.id))}
    if not keys:
        return None
    return _sum(session.scalars(select(RepositoryMaintenance).where(RepositoryMaintenance.repo_key.in_(keys))))


def tenant_stored(session: Session, tenant_id: int) -> int | None:
    return _sum(session.scalars(select(RepositoryMaintenance).where(RepositoryMaintenance.tenant_id == tenant_id)))


@dataclass(frozen=True)
class Standing:
    """Where one quota stands."""

    subject: str  # destination:3 | tenant:2
    tenant_id: int
    what: str  # "storage destination Offsite" | "tenant Acme"
    stored: int | None
    quota: int
    warn_percent: int

    @property
    def full(self) -> bool:
        return self.stored is not None and self.stored >= self.quota

    @property
    def near(self) -> bool:
        return self.stored is not None and self.stored * 100 >= self.quota * self.warn_percent

    def words(self) -> str:
        used = size_text(self.stored or 0)
        return f"{used} of {size_text(self.quota)} ({100 * (self.stored or 0) // self.quota} %)"


def _destination_standing(session: Session, dest: StorageDestination) -> Standing | None:
    if dest.quota_bytes is None:
        return None
    return Standing(
        f"destination:{dest.id}",
        dest.tenant_id,
        f"storage destination {dest.name}",
        destination_stored(session, dest),
        dest.quota_bytes,
        dest.quota_warn_percent,
    )


def _tenant_standing(session: Session, tenant: Tenant) -> Standing | None:
    if tenant.quota_bytes is None:
        return None
    return Standing(
        f"tenant:{tenant.id}",
        tenant.id,
        f"tenant {tenant.name}",
        tenant_stored(session, tenant.id),
        tenant.quota_bytes,
        80,
    )


def over_quota(session: Session, job: Job) -> str | None:
    """Why a new backup of ``job`` must not run (its destination or tenant is full), or None."""
    standings: list[Standing | None] = []
    if job.destination_id is not None:
        dest = session.get(StorageDestination, job.destination_id)
        if dest is not None:
            standings.append(_destination_standing(session, dest))
    tenant = session.get(Tenant, job.tenant_id)
    if tenant is not None:
        standings.append(_tenant_standing(session, tenant))
    for s in standings:
        if s is not None and s.full:
            return f"storage quota reached: {s.what} stores {s.words()}; new backups stop until it is raised or pruned"
    return None


def evaluate(session: Session, now: datetime) -> None:
    """Open or clear the ``storage_quota`` incidents (near: at the warning level; full: at 100 %)."""
    standings = [_destination_standing(session, d) for d in session.scalars(select(StorageDestination))]
    standings += [_tenant_standing(session, t) for t in session.scalars(select(Tenant))]
    for s in standings:
        if s is None:
            continue
        details = {"stored_bytes": s.stored, "quota_bytes": s.quota, "warn_percent": s.warn_percent}
        if s.near:
            alerts.open_incident(
                session,
                now,
                s.tenant_id,
                "storage_quota",
                s.subject,
                f"The {s.what} is near its quota: {s.words()}",
                details,
            )
        else:
            alerts.clear_incident(session, now, "storage_quota", s.subject)
        if s.full:
            alerts.open_incident(
                session,
                now,
                s.tenant_id,
                "storage_quota",
                f"{s.subject}:full",
                f"The {s.what} is full: {s.words()}; new backups stop",
                details,
            )
        else:
            alerts.clear_incident(session, now, "storage_quota", f"{s.subject}:full")


__all__ = [
    "Standing",
    "destination_stored",
    "evaluate",
    "mark_stale",
    "measure_due",
    "over_quota",
    "size_text",
    "tenant_stored",
]
