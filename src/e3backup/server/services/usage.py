"""Storage usage for billing: per repository, tenant and job.

*Stored* is read from the repository's index: every distinct blob once (deduplicated), at its
size in the packs (compressed and encrypted), which is what restic's ``stats --mode raw-data``
counts for a repository whose data all snapshots use (forgotten data counts until it is
pruned: it is still stored and billed). *Protected* is what the jobs back up: each job's last
successful run's source size. A repository the server cannot reach (a local folder outside
``browse_local_roots``, an unreachable endpoint) is listed with the reason instead of numbers.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from e3backup.api.common import Engine, RunKind, RunStatus
from e3backup.repo.repository import Repository
from e3backup.server.db.models import Job, Run, Tenant
from e3backup.server.errors import Conflict
from e3backup.server.security import SecretBox
from e3backup.server.services.maintenance import describe, repo_key
from e3backup.server.services.repository_access import RepoRef, open_job_repository


@dataclass
class RepositoryUsage:
    tenant_id: int
    tenant: str
    where: str
    jobs: list[tuple[int, str, int]] = field(default_factory=list)  # id, name, bytes protected
    stored_bytes: int | None = None
    plaintext_bytes: int | None = None
    blobs: int | None = None
    error: str = ""

    @property
    def protected_bytes(self) -> int:
        return sum(b for _, _, b in self.jobs)


def stored(repo: Repository) -> tuple[int, int, int]:
    """Stored bytes, plaintext bytes and count of the repository's distinct blobs."""
    seen: set[tuple[int, bytes]] = set()
    size = plain = 0
    for loc in repo.index.entries():
        key = (int(loc.blob.type), bytes(loc.blob.id))
        if key in seen:
            continue
        seen.add(key)
        size += loc.blob.length
        plain += loc.blob.plaintext_length
    return size, plain, len(seen)


def report(
    session: Session, box: SecretBox, local_roots: list[Path], tenant_ids: list[int] | None
) -> list[RepositoryUsage]:
    """One row per repository in view (jobs sharing a destination share a row)."""
    query = select(Job).where(Job.engine != Engine.SYNC.value).order_by(Job.tenant_id, Job.id)
    if tenant_ids is not None:
        query = query.where(Job.tenant_id.in_(tenant_ids))
    jobs = list(session.scalars(query))
    names = {int(i): str(n) for i, n in session.execute(select(Tenant.id, Tenant.name)).all()}
    last_ok = select(func.max(Run.id)).where(
        Run.kind == RunKind.BACKUP.value, Run.status.in_((RunStatus.SUCCESS.value, RunStatus.WARNING.value))
    ).group_by(Run.job_id)
    protected = {
        job_id: int(total or processed or 0)
        for job_id, total, processed in session.execute(
            select(Run.job_id, Run.bytes_total, Run.bytes_processed).where(Run.id.in_(last_ok))
        ).all()
    }
    rows: dict[str, RepositoryUsage] = {}
    refs: dict[str, RepoRef] = {}
    for job in jobs:
        key = repo_key(job)
        row = rows.setdefault(key, RepositoryUsage(job.tenant_id, names.get(job.tenant_id, ""), describe(job)))
        if job.deleted_at is None:
            row.jobs.append((job.id, job.name, protected.get(job.id, 0)))
        refs.setdefault(key, RepoRef.of(job))
    for key, row in rows.items():
        try:
            with open_job_repository(box, refs[key], local_roots) as repo:
                row.stored_bytes, row.plaintext_bytes, row.blobs = stored(repo)
        except Conflict as e:
            row.error = str(e)
    return list(rows.values())


CSV_COLUMNS = ("tenant", "repository", "jobs", "protected_bytes", "stored_bytes", "plaintext_bytes", "blobs", "error")


def to_csv(rows: list[RepositoryUsage]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow((r.tenant, r.where, "; ".join(n for _, n, _ in r.jobs), r.protected_bytes,
                    "" if r.stored_bytes is None else r.stored_bytes,
                    "" if r.plaintext_bytes is None else r.plaintext_bytes, "" if r.blobs is None else r.blobs,
                    r.error))
    return buf.getvalue()


__all__ = ["CSV_COLUMNS", "RepositoryUsage", "report", "stored", "to_csv"]
