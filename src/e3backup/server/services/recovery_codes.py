"""One-time recovery codes: "Recover this machine" on the dashboard, redeemed by the console.

A code names one agent's image snapshot (a successful disk image backup run of that agent: the
server never takes a snapshot ID the agent did not report). It is short and typeable
(``XXXX-XXXX-XXXX``, 60 random bits in Crockford's base 32: no I, L, O or U to misread; case,
spaces and dashes do not matter, O reads as 0 and I or L as 1), stored as a hash, expires
unused after ``recovery_code_minutes`` and is redeemed once: the redeem is a conditional UPDATE
(``used_at IS NULL``), so two consoles racing with one code get one session between them.
Redeeming creates the restore run (no agent: the console runs it) and its recovery session.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from e3backup.api.common import Engine, RunKind, RunStatus
from e3backup.server.db.models import Agent, Job, RecoveryCode, RecoverySession, Run, User
from e3backup.server.errors import FieldError, ServiceError
from e3backup.server.security.tokens import hash_token
from e3backup.server.services import audit
from e3backup.server.services import recovery as sessions
from e3backup.server.services import runs as runs_svc

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32
CODE_LENGTH = 12
_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
RESTORABLE = (RunStatus.SUCCESS.value, RunStatus.WARNING.value)


class CodeRefused(ServiceError):
    """The code cannot be redeemed (unknown, expired, used); the message says which."""


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalize(code: str) -> str | None:
    """The code's canonical form, or None when it cannot be one (wrong length or letters)."""
    raw = "".join(code.split()).replace("-", "").upper().translate(_READS_AS)
    if len(raw) != CODE_LENGTH or any(c not in ALPHABET for c in raw):
        return None
    return raw


def code_hash(code: str) -> str:
    return hash_token("e3rc_" + code)


def restore_points(session: Session, agent: Agent, limit: int = 50) -> list[Run]:
    """The agent's image snapshots a recovery may restore: its successful disk image backups."""
    query = (
        select(Run)
        .join(Job, Job.id == Run.job_id)
        .where(
            Run.agent_id == agent.id,
            Run.kind == RunKind.BACKUP.value,
            Run.status.in_(RESTORABLE),
            Run.snapshot_id.is_not(None),
            Job.engine == Engine.DISK_IMAGE.value,
        )
        .order_by(Run.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def issue(
    session: Session,
    agent: Agent,
    snapshot_id: str,
    user: User,
    now: datetime,
    minutes: float,
    ip: str | None = None,
) -> tuple[RecoveryCode, str]:
    """A code for ``snapshot_id``, which must be one of ``agent``'s image snapshots (audited)."""
    source = next((r for r in restore_points(session, agent, 10_000) if r.snapshot_id == snapshot_id), None)
    if source is None or source.job_id is None:
        why = f"{snapshot_id[:16]} is not an image snapshot of {agent.hostname}: pick one of its restore points"
        raise FieldError("snapshot_id", why)
    code = new_code()
    row = RecoveryCode(
        tenant_id=agent.tenant_id,
        agent_id=agent.id,
        job_id=source.job_id,
        source_run_id=source.id,
        snapshot_id=snapshot_id,
        code_hash=code_hash(normalize(code) or ""),
        created_by=user.id,
        created_at=now,
        expires_at=now + timedelta(minutes=minutes),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        now,
        "recovery.code_issued",
        user=user,
        tenant_id=agent.tenant_id,
        target_type="agent",
        target_id=agent.id,
        ip=ip,
        details={"hostname": agent.hostname, "snapshot_id": snapshot_id, "expires_at": row.expires_at.isoformat()},
    )
    return row, code


def redeem(session: Session, code: str, now: datetime, ip: str | None = None) -> tuple[Run, RecoverySession, str]:
    """Use the code once: the restore run, its session and the session token (shown once). The
    recovery's start is audited in the name of the user who issued the code."""
    canonical = normalize(code)
    row = None
    if canonical is not None:
        row = session.scalar(select(RecoveryCode).where(RecoveryCode.code_hash == code_hash(canonical)))
    if row is None:
        raise CodeRefused("unknown recovery code: check it against the dashboard")
    if row.used_at is not None:
        raise CodeRefused("this recovery code was already used: issue a new one on the dashboard")
    if row.expires_at <= now:
        raise CodeRefused("this recovery code expired unused: issue a new one on the dashboard")
    creator = session.get(User, row.created_by) if row.created_by is not None else None
    agent, job = session.get(Agent, row.agent_id), session.get(Job, row.job_id)
    if creator is None or creator.disabled or agent is None or job is None:
        raise CodeRefused("this recovery code no longer works (its user, agent or job is gone): issue a new one")
    claimed = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise CodeRefused("this recovery code was already used: issue a new one on the dashboard")
    restore = {
        "type": "bare_metal",
        "snapshot_id": row.snapshot_id,
        "source_run_id": row.source_run_id,
        "agent_id": agent.id,
        "hostname": agent.hostname,
        "target_disk": "",
    }
    run = runs_svc.create_run(session, job, now, trigger="recovery", kind=RunKind.RESTORE, restore=restore)
    run.agent_id = None  # the recovery console, not the agent, runs it
    recovery, token = sessions.create_session(session, run, row.created_by, now)
    row.run_id = run.id
    session.flush()
    audit.record(
        session,
        now,
        "recovery.start",
        user=creator,
        tenant_id=run.tenant_id,
        target_type="run",
        target_id=run.id,
        ip=ip,
        details={"hostname": agent.hostname, "snapshot_id": row.snapshot_id, "via": "recovery code"},
    )
    return run, recovery, token


def recovery_runs(session: Session, agent: Agent, limit: int = 20) -> list[Run]:
    """The recovery runs started with this agent's codes, newest first."""
    query = (
        select(Run)
        .join(RecoveryCode, RecoveryCode.run_id == Run.id)
        .where(RecoveryCode.agent_id == agent.id)
        .order_by(Run.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


__all__ = [
    "ALPHABET",
    "CODE_LENGTH",
    "CodeRefused",
    "code_hash",
    "issue",
    "new_code",
    "normalize",
    "recovery_runs",
    "redeem",
    "restore_points",
]
