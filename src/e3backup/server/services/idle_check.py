"""Which of several agents' polls find nothing to do, in one transaction for all of them.

Nearly every poll a fleet sends (``next_run``, ``poll_commands``) finds no queued run and no
pending command. Answered one by one, each paid its own connection checkout, statements and
commit; checked together, a batch of polls costs one ``UPDATE agents ... RETURNING`` (the
revocation re-check and the ``last_seen_at`` write of ``deps.agent_transaction``, for every
agent of the batch at once), one query for queued runs, one for pending commands, and one
commit. The check only reads and records the contact: a poll that finds work (a queued run its
``kind`` and the agent's pause allow, a pending command, a changed heartbeat field, a release to
offer) is answered by the ordinary handler, which claims the run on its own, exactly as before.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Connection, Integer, bindparam, literal_column, select, update

from e3backup.api.agent import NextRunRequest
from e3backup.api.common import CommandStatus, RunKind, RunStatus
from e3backup.server.db.models import Agent, Command, Run, Tenant

LAST_SEEN_COLUMNS = (Agent.id, Agent.paused, Agent.agent_version, Agent.os_version, Agent.engines, Agent.platform)


class Verdict(enum.Enum):
    IDLE = "idle"  # nothing for this poll: the constant idle answer
    WORK = "work"  # something to hand out or record: the ordinary handler answers
    REFUSED = "refused"  # revoked or gone: the app answers (401), as for an unknown token


@dataclass(frozen=True)
class Poll:
    """One poll to check: the agent, whether its ``last_seen_at`` is due, and what it asked."""

    agent_id: int
    tenant_id: int
    due: bool
    commands: bool  # poll_commands; else next_run
    kind: RunKind | None = None
    body: NextRunRequest | None = None


_IDS: BindParameter[int] = bindparam("ids", expanding=True)
_LIVE = (Agent.id.in_(_IDS), Agent.revoked.is_(False))
# The agent's id qualified by hand: SQLAlchemy renders SQLite's RETURNING columns unqualified,
# and a bare ``id`` inside these subqueries would be the run's or the command's own id.
_AGENT_ID = literal_column(f"{Agent.__tablename__}.id", Integer)
_QUEUED = select(Run.id).where(Run.agent_id == _AGENT_ID, Run.status == RunStatus.QUEUED.value, Run.job_id.is_not(None))
# what the handlers would act on, read with the agent's row (index probes on (agent_id, status))
_WORK = (
    _QUEUED.where(Run.kind == RunKind.BACKUP.value).exists().label("backup_queued"),
    _QUEUED.where(Run.kind != RunKind.BACKUP.value).exists().label("other_queued"),
    select(Command.id)
    .where(Command.agent_id == _AGENT_ID, Command.status == CommandStatus.PENDING.value)
    .exists()
    .label("command_pending"),
)
_SEEN = update(Agent).where(*_LIVE).values(last_seen_at=bindparam("now")).returning(*LAST_SEEN_COLUMNS, *_WORK)
_READ = select(*LAST_SEEN_COLUMNS, *_WORK).where(*_LIVE)
_WANTED = select(Tenant.id, Tenant.agent_version_wanted).where(Tenant.id.in_(_IDS))


def check(conn: Connection, polls: Sequence[Poll], now: datetime) -> list[Verdict]:
    """Each poll's verdict, in order; records ``last_seen_at = now`` for the agents whose polls
    say it is due (only while not revoked). One statement for the agents due, one for the others
    (the caller commits, or runs it in autocommit: each statement stands alone)."""
    due = sorted({p.agent_id for p in polls if p.due})  # sorted: batches lock rows in one order
    rows: dict[int, Any] = {}
    if due:
        rows.update((r.id, r) for r in conn.execute(_SEEN, {"ids": due, "now": now}))
    not_due = sorted({p.agent_id for p in polls} - set(due))
    if not_due:
        rows.update((r.id, r) for r in conn.execute(_READ, {"ids": not_due}))
    offering = sorted({p.tenant_id for p in polls if _may_offer(p.body)})
    wanted = {r[0]: r[1] for r in conn.execute(_WANTED, {"ids": offering})} if offering else {}
    verdicts = []
    for p in polls:
        row = rows.get(p.agent_id)
        if row is None:
            verdicts.append(Verdict.REFUSED)
        elif p.commands:
            verdicts.append(Verdict.WORK if row.command_pending else Verdict.IDLE)
        elif _runnable(row, p.kind) or _reports(row, p.body) or _offers(wanted.get(p.tenant_id), p.body):
            verdicts.append(Verdict.WORK)
        else:
            verdicts.append(Verdict.IDLE)
    return verdicts


def _runnable(row: Any, kind: RunKind | None) -> bool:
    """A queued run the handler's claim would consider (``runs.claim_next_run``: no backup for
    a paused agent). For a restore or maintenance ``kind`` any queued run that is not a backup
    counts: the handler's own filter is exact, this only must not miss one."""
    backup = bool(row.backup_queued) and not row.paused
    if kind is None:
        return backup or bool(row.other_queued)
    if kind is RunKind.BACKUP:
        return backup
    return bool(row.other_queued)


def _reports(row: Any, body: NextRunRequest | None) -> bool:
    """The poll changes the agent's row (``agent_api._reported``): the handler writes it."""
    if body is None:
        return False
    return (
        body.update_event is not None
        or (body.agent_version is not None and body.agent_version != row.agent_version)
        or (body.os_version is not None and body.os_version != row.os_version)
        or (body.engines is not None and [e.value for e in body.engines] != row.engines)
        or (body.platform is not None and body.platform != row.platform)
    )


def _may_offer(body: NextRunRequest | None) -> bool:
    """``agent_releases.offer`` looks further only for such a poll."""
    return body is not None and body.self_update and bool(body.build_platform) and bool(body.agent_version)


def _offers(wanted: str | None, body: NextRunRequest | None) -> bool:
    """The agent's tenant wants another version: the handler looks for a release to offer."""
    return _may_offer(body) and bool(wanted) and body is not None and wanted != body.agent_version


__all__ = ["LAST_SEEN_COLUMNS", "Poll", "Verdict", "check"]
