"""Run events: idempotent batches keyed by the agent's sequence numbers, and their views."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from e3backup.api.agent import AgentEvent, PushEventsResponse
from e3backup.api.common import EventLevel
from e3backup.api.recovery import RunEventView
from e3backup.events import CODES, EventCode, meaning
from e3backup.server.db.models import Run, RunEvent


def _default_level(code: str) -> EventLevel:
    try:
        return EventLevel(CODES[EventCode(code)].level.value)
    except (ValueError, KeyError):
        return EventLevel.INFO


ERROR_MARGIN = 1000
"""Errors are still stored this far past the cap: a run's failure reason is never lost."""


def push_events(
    session: Session, run: Run, events: list[AgentEvent], now: datetime, max_events: int
) -> PushEventsResponse:
    """Store the events whose ``seq`` the run does not have yet; a resent batch adds nothing.

    A run keeps at most ``max_events`` events (errors: ``ERROR_MARGIN`` more). Beyond that the
    events are counted in one ``EVENTS_CAPPED`` event, so a runaway agent cannot fill the
    database, and the batch is still answered as taken (the agent must not resend it forever).
    """
    for attempt in range(2):
        seqs = {e.seq for e in events}
        have = set(session.scalars(select(RunEvent.seq).where(RunEvent.run_id == run.id, RunEvent.seq.in_(seqs))))
        stored = session.scalar(select(func.count(RunEvent.id)).where(RunEvent.run_id == run.id)) or 0
        accepted, dropped = 0, Counter[str]()
        for event in events:
            if event.seq in have:
                continue
            have.add(event.seq)
            level = event.level or _default_level(event.code)
            room = max_events + (ERROR_MARGIN if level is EventLevel.ERROR else 0)
            if stored >= room:
                dropped[level.value] += 1
                continue
            session.add(
                RunEvent(
                    run_id=run.id,
                    seq=event.seq,
                    ts=event.ts or now,
                    received_at=now,
                    code=event.code,
                    level=level.value,
                    message=event.message,
                    details=event.details,
                )
            )
            accepted += 1
            stored += 1
        if dropped:
            _count_dropped(session, run, dropped, now, max_events)
        try:
            session.flush()
            break
        except IntegrityError:
            # the same batch arrived concurrently: start again from what is stored now
            session.rollback()
            if attempt:
                raise
    last = session.scalar(select(func.max(RunEvent.seq)).where(RunEvent.run_id == run.id))
    total = sum(dropped.values())
    return PushEventsResponse(
        accepted=accepted, duplicates=len(events) - accepted - total, last_seq=last, dropped=total
    )


def _count_dropped(session: Session, run: Run, dropped: Counter[str], now: datetime, max_events: int) -> None:
    """Add to the run's one ``EVENTS_CAPPED`` event (made on the first drop)."""
    code = EventCode.EVENTS_CAPPED.value
    row = session.scalar(
        select(RunEvent).where(RunEvent.run_id == run.id, RunEvent.code == code, RunEvent.seq.is_(None))
    )
    if row is None:
        row = RunEvent(
            run_id=run.id,
            seq=None,
            ts=now,
            received_at=now,
            code=code,
            level=EventLevel.WARNING.value,
            message=f"More than {max_events} events: further events are counted, not stored",
            details={"limit": max_events, "dropped": 0, "by_level": {}},
        )
        session.add(row)
    by_level = dict(row.details.get("by_level", {}))
    for level, n in dropped.items():
        by_level[level] = by_level.get(level, 0) + n
    row.details = {
        **row.details,
        "dropped": int(row.details.get("dropped", 0)) + sum(dropped.values()),
        "by_level": by_level,
    }
    row.received_at = now


def list_events(session: Session, run_id: int, after_id: int, limit: int) -> list[RunEventView]:
    rows = session.scalars(
        select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.id > after_id).order_by(RunEvent.id).limit(limit)
    )
    return [
        RunEventView(
            id=r.id,
            seq=r.seq,
            ts=r.ts,
            code=r.code,
            level=EventLevel(r.level),
            message=r.message,
            meaning=meaning(r.code),
            details=r.details,
        )
        for r in rows
    ]


__all__ = ["list_events", "push_events"]
