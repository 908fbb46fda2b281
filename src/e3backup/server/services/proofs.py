"""Proofs of restore: stored as the agent reports them, the last one per job and per snapshot,
and the ``proof_failed`` alert (opened by a failed proof of the job, cleared by a passed one)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from e3backup.api.common import RunKind
from e3backup.api.proofs import ProofReport, ProofView
from e3backup.server.db.models import Job, Proof, Run
from e3backup.server.errors import FieldError
from e3backup.server.services import alerts


def record(session: Session, run: Run, report: ProofReport, now: datetime) -> Proof:
    """Store the proof of ``run`` (the agent's own backup run) and open or clear its alert. A proof
    sent twice (the outbox resends after a lost answer) is stored once."""
    if run.kind != RunKind.BACKUP.value:
        raise FieldError("run_id", f"run {run.id} is a {run.kind} run: proofs are of backup runs")
    if run.snapshot_id is not None and run.snapshot_id != report.snapshot_id:
        raise FieldError("snapshot_id", f"run {run.id} saved snapshot {run.snapshot_id[:8]}, "
                                        f"not {report.snapshot_id[:8]}")
    same = session.scalars(select(Proof).where(Proof.run_id == run.id, Proof.snapshot_id == report.snapshot_id,
                                               Proof.started_at == report.started_at)).first()
    if same is not None:
        return same
    proof = Proof(
        tenant_id=run.tenant_id, job_id=run.job_id, agent_id=run.agent_id, run_id=run.id,
        snapshot_id=report.snapshot_id, kind=report.kind, verdict=report.verdict, reason=report.reason,
        checks=[c.model_dump() for c in report.checks], started_at=report.started_at,
        finished_at=report.finished_at, received_at=now, screenshot=report.screenshot_bytes(),
    )
    session.add(proof)
    session.flush()
    _alert(session, proof, now)
    return proof


def _alert(session: Session, proof: Proof, now: datetime) -> None:
    if proof.job_id is None:
        return
    subject = f"job:{proof.job_id}"
    if proof.verdict == "passed":
        alerts.clear_incident(session, now, "proof_failed", subject)
        return
    job = session.get(Job, proof.job_id)
    name = job.name if job else f"job {proof.job_id}"
    alerts.open_incident(
        session, now, proof.tenant_id, "proof_failed", subject,
        f"Proof of restore of {name} failed ({proof.kind}): {proof.reason or 'no reason given'}",
        {"job_id": proof.job_id, "run_id": proof.run_id, "proof_id": proof.id, "snapshot_id": proof.snapshot_id,
         "kind": proof.kind, "reason": proof.reason},
    )


def screenshot_url(proof: Proof) -> str | None:
    return f"/api/proofs/{proof.id}/screenshot.png" if proof.screenshot else None


def view(proof: Proof) -> ProofView:
    return ProofView.model_validate(proof).model_copy(update={"screenshot_url": screenshot_url(proof)})


def last_by_job(session: Session, job_ids: Iterable[int]) -> dict[int, Proof]:
    """Each job's newest proof (by when it finished)."""
    ids = list(job_ids)
    if not ids:
        return {}
    out: dict[int, Proof] = {}
    query = select(Proof).where(Proof.job_id.in_(ids)).order_by(Proof.finished_at.desc(), Proof.id.desc())
    for proof in session.scalars(query):
        if proof.job_id is not None:
            out.setdefault(proof.job_id, proof)
    return out


def by_run(session: Session, run_ids: Iterable[int]) -> dict[int, Proof]:
    """The newest proof of each backup run's snapshot (runs the caller may see)."""
    ids = list(run_ids)
    if not ids:
        return {}
    out: dict[int, Proof] = {}
    query = select(Proof).where(Proof.run_id.in_(ids)).order_by(Proof.finished_at.desc(), Proof.id.desc())
    for proof in session.scalars(query):
        if proof.run_id is not None:
            out.setdefault(proof.run_id, proof)
    return out


__all__ = ["by_run", "last_by_job", "record", "screenshot_url", "view"]
