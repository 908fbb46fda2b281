"""Run events: idempotent batches keyed by the agent's sequence numbers, and their views."""

from __future__ import annotations

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


def push_events(session: Session, run: Run, events: list[AgentEvent], now: datetime) -> PushEventsResponse:
    """Store the events whose ``seq`` the run does not have yet; a resent batch adds nothing."""
    for attempt in range(2):
        seqs = {e.seq for e in events}
        have = set(
            session.scalars(select(RunEvent.seq).where(RunEvent.run_id == run.id, RunEvent.seq.in_(seqs)))
        )
        accepted = 0
        for event in events:
            if event.seq in have:
                continue
            have.add(event.seq)
            session.add(
                RunEvent(
                    run_id=run.id,
                    seq=event.seq,
                    ts=event.ts or now,
                    received_at=now,
                    code=event.code,
                    level=(event.level or _default_level(event.code)).value,
                    message=event.message,
                    details=event.details,
                )
            )
            accepted += 1
        try:
            session.flush()
            break
        except IntegrityError:
            # the same batch arrived concurrently: start again from what is stored now
            session.rollback()
            if attempt:
                raise
    last = session.scalar(select(func.max(RunEvent.seq)).where(RunEvent.run_id == run.id))
    return PushEventsResponse(accepted=accepted, duplicates=len(events) - accepted, last_seq=last)


def list_events(session: Session, run_id: int, after_id: int, limit: int) -> list[RunEventView]:
    rows = session.scalars(
        select(RunEvent)
        .where(RunEvent.run_id == run_id, RunEvent.id > after_id)
        .order_by(RunEvent.id)
        .limit(limit)
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
