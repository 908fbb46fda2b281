"""Who may do what through the gateway: tokens to grants, and the append-only rules.

A request carries a token as the HTTP basic password (restic's ``rest:`` URLs have no other
way; the user name is not used). Two kinds are accepted, both looked up by their SHA-256 in the
database on every request (no grant is kept in the process, so any replica answers alike and a
revocation holds at once):

- the agent's gateway token (``e3g_``, derived from its agent token): **append** rights on the
  repositories of that agent's gateway-mode jobs;
- a live recovery session token (``e3r_``): **read** rights on the repository of its run's job
  (the recovery console restores through the gateway);
- the server's own reader token (``e3d_``, ``services.gateway_readers``): **read** rights on one
  job's repository for one dashboard request (browse, preview, downloads).

Any other repository is answered 404, exactly as one that does not exist: an agent cannot
even learn whether another agent's repository is there.

Append rights (``rest-server --append-only``, narrowed to the agent's own locks): read, list,
create the repository, save an object that does not exist yet (its name must be the SHA-256 of
its content) and delete a lock file this agent created. Deleting or replacing config, keys,
snapshots, index or data is refused (403) with the reason; forget and prune run in the server's
maintenance worker, which reaches the storage directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..server.db.models import Agent, GatewayReadToken, Job, RecoverySession, Run
from ..server.security.tokens import GATEWAY, READER, RECOVERY, hash_token
from ..server.services import recovery as recovery_svc
from ..store.base import FileType, Handle


class Scope(Enum):
    READ = "read"
    APPEND = "append"


@dataclass(frozen=True)
class Grant:
    """A token's rights on one repository (a job's destination)."""

    job_id: int
    tenant_id: int
    scope: Scope
    agent_id: int | None  # who owns the locks it creates (None for read-only tokens)
    who: str  # for logs and messages: "agent 7", "recovery session of run 12"


def grant_for(session: Session, token: str, job_id: int, now: datetime) -> Grant | None:
    """The token's grant on job ``job_id``'s repository, or None (unknown token, or not its job)."""
    token_hash = hash_token(token)
    if token.startswith(GATEWAY):
        agent = session.scalar(select(Agent).where(Agent.gateway_token_hash == token_hash))
        if agent is None or agent.revoked or agent.deleted_at is not None:
            return None
        job = session.get(Job, job_id)
        if job is None or job.agent_id != agent.id or job.deleted_at is not None or job.storage_mode != "gateway":
            return None
        return Grant(job.id, job.tenant_id, Scope.APPEND, agent.id, f"agent {agent.id}")
    if token.startswith(RECOVERY):
        row = session.scalar(select(RecoverySession).where(RecoverySession.token_hash == token_hash))
        if row is None or row.expires_at <= now or recovery_svc.ended(session, row) is not None:
            return None
        run = session.get(Run, row.run_id)
        job = session.get(Job, job_id)
        if run is None or job is None or run.job_id != job.id or job.storage_mode != "gateway":
            return None
        return Grant(job.id, job.tenant_id, Scope.READ, None, f"recovery session of run {run.id}")
    if token.startswith(READER):
        reader = session.scalar(select(GatewayReadToken).where(GatewayReadToken.token_hash == token_hash))
        if reader is None or reader.expires_at <= now or reader.job_id != job_id:
            return None
        job = session.get(Job, job_id)
        if job is None or job.deleted_at is not None or job.storage_mode != "gateway":
            return None
        return Grant(job.id, job.tenant_id, Scope.READ, None, f"dashboard reader of user {reader.user_id}")
    return None


def holder(session: Session, token: str) -> tuple[str, int | None]:
    """Who a token that got no grant belongs to, for the audit log: (who, their tenant), or
    ("unknown token", None). Revoked and expired tokens are still named."""
    token_hash = hash_token(token)
    if token.startswith(GATEWAY):
        agent = session.scalar(select(Agent).where(Agent.gateway_token_hash == token_hash))
        if agent is not None:
            return f"agent {agent.id}" + (" (revoked)" if agent.revoked else ""), agent.tenant_id
    elif token.startswith(RECOVERY):
        row = session.scalar(select(RecoverySession).where(RecoverySession.token_hash == token_hash))
        if row is not None:
            return f"recovery session of run {row.run_id}", row.tenant_id
    elif token.startswith(READER):
        reader = session.scalar(select(GatewayReadToken).where(GatewayReadToken.token_hash == token_hash))
        if reader is not None:
            return f"dashboard reader of user {reader.user_id}", None
    return "unknown token", None


class Refused(Exception):
    """The request is not allowed for this grant; the message says why (sent with the 403)."""


_WHY = ("this token may only add to the repository (append-only); forget, prune and repairs run in "
        "the server's maintenance worker")


def check_write(grant: Grant, method: str, target: Handle | None, exists: bool) -> None:
    """Raise ``Refused`` unless ``grant`` may ``method`` (POST/DELETE) ``target`` (None: the
    repository root); ``exists`` says whether the object is there now. Lock deletions are
    checked against their owner separately (``owns_lock``)."""
    if grant.scope is Scope.READ:
        raise Refused(f"{method} refused: this token is read-only ({grant.who})")
    if target is None:
        return  # POST /?create=true: creating the layout changes no object
    if method == "POST":
        if exists:
            raise Refused(f"overwriting {target} refused: it exists and objects are never replaced; {_WHY}")
        return
    if method == "DELETE" and target.type is not FileType.LOCK:
        raise Refused(f"deleting {target} refused: {_WHY}")


__all__ = ["Grant", "Refused", "Scope", "check_write", "grant_for", "holder"]
