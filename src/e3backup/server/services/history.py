"""History at scale: runs and events filtered (tenant, agent, job, status, date range), paged
with a total, and as CSV. One query shape for the API, the pages and the exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from e3backup.server.db.models import Agent, Job, Run, RunEvent, Tenant

CSV_LIMIT = 100_000


@dataclass(frozen=True)
class RunFilter:
    tenant_ids: list[int] | None = None  # None: every tenant
    agent_id: int | None = None
    job_id: int | None = None
    status: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def aware(when: datetime | None) -> datetime | None:
    """A time without a zone is UTC."""
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _where(query: Any, f: RunFilter) -> Any:
    if f.tenant_ids is not None:
        query = query.where(Run.tenant_id.in_(f.tenant_ids))
    if f.agent_id is not None:
        query = query.where(Run.agent_id == f.agent_id)
    if f.job_id is not None:
        query = query.where(Run.job_id == f.job_id)
    if f.status:
        query = query.where(Run.status == f.status)
    if f.kind:
        query = query.where(Run.kind == f.kind)
    if f.since is not None:
        query = query.where(Run.created_at >= aware(f.since))
    if f.until is not None:
        query = query.where(Run.created_at < aware(f.until))
    return query


def runs_page(session: Session, f: RunFilter, offset: int, limit: int) -> tuple[list[Run], int]:
    total = session.scalar(_where(select(func.count(Run.id)), f)) or 0
    rows = session.scalars(_where(select(Run), f).order_by(Run.id.desc()).offset(offset).limit(limit))
    return list(rows), total


def event_rows(
    session: Session, f: RunFilter, level: str | None, offset: int, limit: int
) -> tuple[list[tuple[RunEvent, Run]], int]:
    """Events of the filtered runs, newest first (``level`` narrows further)."""
    count = _where(select(func.count(RunEvent.id)).join(Run, Run.id == RunEvent.run_id), f)
    if level:
        count = count.where(RunEvent.level == level)
    total = session.scalar(count) or 0
    return event_page(session, f, level, offset, limit), total


def event_page(
    session: Session, f: RunFilter, level: str | None, offset: int, limit: int
) -> list[tuple[RunEvent, Run]]:
    """One page of :func:`event_rows` without the count (the CSV's batches)."""
    base = _where(select(RunEvent, Run).join(Run, Run.id == RunEvent.run_id), f)
    if level:
        base = base.where(RunEvent.level == level)
    return [(e, r) for e, r in session.execute(base.order_by(RunEvent.id.desc()).offset(offset).limit(limit)).all()]


def names(session: Session, tenant_ids: list[int] | None) -> dict[str, dict[int, str]]:
    """Tenant, agent and job names for the columns (deleted jobs and agents included)."""
    def pairs(query: Any, column: Any) -> dict[int, str]:
        if tenant_ids is not None:
            query = query.where(column.in_(tenant_ids))
        return {int(row[0]): str(row[1]) for row in session.execute(query).all()}

    return {
        "tenants": pairs(select(Tenant.id, Tenant.name), Tenant.id),
        "agents": pairs(select(Agent.id, func.coalesce(Agent.display_name, Agent.hostname)), Agent.tenant_id),
        "jobs": pairs(select(Job.id, Job.name), Job.tenant_id),
    }


CSV_COLUMNS = (
    "run_id", "tenant", "agent", "job", "kind", "trigger", "status", "backup_type", "created_at_utc",
    "started_at_utc", "finished_at_utc", "duration_s", "bytes_processed", "bytes_uploaded", "files_processed",
    "snapshot_id", "error",
)


def _iso(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else ""


def runs_csv(session: Session, f: RunFilter) -> Iterator[str]:
    """The filtered runs as CSV, newest first, streamed in batches (at most ``CSV_LIMIT`` rows)."""
    labels = names(session, f.tenant_ids)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    offset = 0
    while offset < CSV_LIMIT:
        rows, _ = runs_page(session, f, offset, 1000)
        if not rows:
            break
        for r in rows:
            writer.writerow(_csv_row(r, labels))
        offset += len(rows)
        yield _drain(buf)
    yield _drain(buf)


EVENT_CSV_COLUMNS = ("event_id", "time_utc", "tenant", "agent", "job", "run_id", "level", "code", "message")


def events_csv(session: Session, f: RunFilter, level: str | None) -> Iterator[str]:
    """The filtered events as CSV, newest first, streamed in batches (at most ``CSV_LIMIT`` rows)."""
    labels = names(session, f.tenant_ids)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(EVENT_CSV_COLUMNS)
    offset = 0
    while offset < CSV_LIMIT:
        rows = event_page(session, f, level, offset, 1000)
        if not rows:
            break
        for e, r in rows:
            writer.writerow((e.id, _iso(e.ts), labels["tenants"].get(r.tenant_id, ""),
                             labels["agents"].get(r.agent_id or 0, ""), labels["jobs"].get(r.job_id or 0, ""),
                             r.id, e.level, e.code, _cell(e.message)))
        offset += len(rows)
        yield _drain(buf)
    yield _drain(buf)


def _cell(text: str | None) -> str:
    """One line, and no formula when opened in a spreadsheet."""
    text = (text or "").replace("\r", " ").replace("\n", " ")
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def _csv_row(r: Run, labels: dict[str, dict[int, str]]) -> Iterable[object]:
    error = _cell(r.error_summary)
    return (
        r.id, labels["tenants"].get(r.tenant_id, ""), labels["agents"].get(r.agent_id or 0, ""),
        labels["jobs"].get(r.job_id or 0, ""), r.kind, r.trigger, r.status, r.backup_type or "",
        _iso(r.created_at), _iso(r.started_at), _iso(r.finished_at),
        f"{r.duration_seconds:.1f}" if r.duration_seconds is not None else "", r.bytes_processed or "",
        r.bytes_uploaded or "", r.files_processed or "", r.snapshot_id or "", error,
    )


def _drain(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text


__all__ = ["CSV_COLUMNS", "EVENT_CSV_COLUMNS", "RunFilter", "aware", "event_page", "event_rows", "events_csv", "names",
           "runs_csv", "runs_page"]
