"""The maintenance worker: forget, prune and check of gateway-mode repositories, with full rights.

Agents of gateway-mode jobs cannot delete anything, so what deletes runs here, in the server,
which holds the storage credentials and the repository password (both sealed in the database).
The server queues **worker runs** (maintenance runs with no agent, ``services.maintenance``):
the scheduled prune/check of each repository, and each gateway-mode job's retention after a
successful backup. The worker claims them with a conditional UPDATE (queued -> running), so
several server replicas can run it side by side without doing a run twice, and executes them
with the same code the agents and the CLI use (``e3backup.maintenance``: ``apply_retention`` and
``run_maintenance``), then reports through the runs service like an agent would
(``apply_update``: the run's status and summary, the maintenance schedule, forgotten snapshots,
alerts).

Payloads (``run.restore``): ``{"mode": "retention", "snapshot_id": ...}`` forgets by the job's
policy among that snapshot's host's snapshots of the job (as the agent does in direct mode);
``{"mode": "quick"|"full", "forget": bool}`` is a maintenance run.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..api.agent import UpdateRunRequest
from ..api.common import RunKind, RunStatus
from ..errors import E3Error, NotFoundError
from ..maintenance import MaintenanceOptions, apply_retention, run_maintenance
from ..repo.forget import ForgetPolicy
from ..repo.repository import Repository
from ..server.db.models import Job, Run
from ..server.errors import Conflict
from ..server.services import runs as runs_svc
from ..server.services.jobs import destination_with_secrets
from ..server.state import ServerState
from ..store.url import open_store
from .stores import destination_location

log = logging.getLogger("e3backup.gateway.worker")


def claim(session: Session, now: Any) -> Run | None:
    """The oldest queued worker run, marked running; None when there is none."""
    candidates = session.scalars(
        select(Run.id).where(Run.agent_id.is_(None), Run.kind == RunKind.MAINTENANCE.value,
                             Run.status == RunStatus.QUEUED.value, Run.job_id.is_not(None))
        .order_by(Run.id).limit(20)
    ).all()
    for run_id in candidates:
        claimed = session.execute(
            update(Run).where(Run.id == run_id, Run.status == RunStatus.QUEUED.value)
            .values(status=RunStatus.RUNNING.value, started_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            session.commit()
            return session.get(Run, run_id, populate_existing=True)
    return None


class MaintenanceWorker:
    """Claims and executes worker runs; ``tick`` runs every queued one (tests call it directly)."""

    def __init__(self, state: ServerState, interval_seconds: float) -> None:
        self._state = state
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[int]:
        """Execute queued worker runs until none is left; returns their IDs."""
        done: list[int] = []
        while True:
            with self._state.sessions() as session:
                run = claim(session, self._state.clock.now())
                if run is None:
                    return done
                self._execute(session, run)
                done.append(run.id)

    def _execute(self, session: Session, run: Run) -> None:
        job = session.get(Job, run.job_id)
        assert job is not None  # a worker run is always a job's
        payload = dict(run.restore or {})
        log.info("maintenance worker: run %s (%s) of job %s", run.id, payload.get("mode"), job.id)
        try:
            with self._open(job) as repo:
                if payload.get("mode") == "retention":
                    summary = self._retention(repo, job, str(payload.get("snapshot_id", "")))
                else:
                    keep = job.retention if payload.get("forget") else {}
                    opts = MaintenanceOptions(mode=str(payload.get("mode", "quick")), policy=ForgetPolicy(**keep))
                    summary = run_maintenance(repo, opts)
            removed = list(summary.get("snapshots_removed") or [])
            ok = summary.get("ok", True)
            update: dict[str, Any] = {
                "run_id": run.id, "status": RunStatus.SUCCESS if ok else RunStatus.FAILED,
                "summary": _counters(summary), "snapshots_removed": removed or None,
                "error_summary": None if ok else "repository check found errors",
            }
        except (E3Error, Conflict) as e:
            log.error("maintenance worker: run %s failed: %s", run.id, e)
            update = {"run_id": run.id, "status": RunStatus.FAILED, "error_summary": str(e)[:2000]}
        runs_svc.apply_update(session, run, UpdateRunRequest.model_validate(update), self._state.clock.now())
        session.commit()

    def _retention(self, repo: Repository, job: Job, snapshot_id: str) -> dict[str, Any]:
        """The job's retention among the backed-up host's snapshots of this job: what the agent
        applies after a backup in direct mode (``apply_retention``, the same code)."""
        policy = ForgetPolicy(**job.retention)
        try:
            host = repo.load_snapshot(snapshot_id).hostname
        except NotFoundError:  # a later run's retention already forgot it: nothing left to do here
            return {"mode": "retention", "policy": policy.describe(), "snapshots_removed": [], "ok": True}
        result = apply_retention(repo, policy, host, f"job:{job.id}")
        return {"mode": "retention", "policy": policy.describe(), "host": host,
                "snapshots_removed": result.removed, "snapshots_kept": result.kept, "ok": True}

    def _open(self, job: Job) -> _OpenRepository:
        dest = destination_with_secrets(self._state.box, job)
        roots: list[Path] = list(self._state.settings.gateway_local_roots)
        return _OpenRepository(dest, roots)

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="e3backup-maintenance-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wake(self) -> None:
        """Look for work now (after the scheduler queued some), not at the next interval."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("maintenance worker tick failed")
            self._wake.wait(self._interval)
            self._wake.clear()


def _counters(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's numbers, as the run page shows them (nested ones flattened: ``prune.packs_deleted``)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        elif isinstance(value, int | float):  # a bool (check.ok) as 0 or 1
            out[prefix.rstrip(".")] = float(value)
        elif isinstance(value, list) and prefix in ("snapshots_removed.", "check.errors."):
            out[prefix + "count"] = float(len(value))

    walk("", summary)
    ordered = sorted(out.items(), key=lambda kv: kv[0].startswith("prune.plan."))  # the plan's details last
    return dict(ordered[:64])


class _OpenRepository:
    """The job's repository opened directly on its storage (full rights), closed on exit; the
    destination's secrets are dropped once the repository is open."""

    def __init__(self, dest: dict[str, Any], roots: list[Path]) -> None:
        self._dest = dest
        self._roots = roots
        self._repo: Repository | None = None

    def __enter__(self) -> Repository:
        try:
            password = str(self._dest.get("repository_password") or "").encode()
            location, options = destination_location(self._dest, self._roots)
            store = open_store(location, **options)
        finally:
            self._dest.clear()
        try:
            self._repo = Repository.open(store, password)
        except BaseException:
            store.close()
            raise
        return self._repo

    def __exit__(self, *exc: object) -> None:
        if self._repo is not None:
            self._repo.close()


__all__ = ["MaintenanceWorker", "claim"]
