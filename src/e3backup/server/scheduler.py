"""Creates runs when jobs are due.

Each scheduled job stores ``next_run_at`` (UTC), the next time its cron expression fires in its
time zone. :func:`due_runs` is pure: given the jobs' schedules and ``now`` it says which runs to
create and when each job fires next. When the server was down across several fire times, a job
gets a single ``catchup`` run, not one per missed time. :class:`Scheduler` applies that to the
database, on a background thread in the app (``tick`` is called directly in tests).

With replicas only the leader (:mod:`.cluster.leader`) ticks. What makes a fire time one run,
whoever ticks: the due jobs are read ``FOR UPDATE SKIP LOCKED`` and moved to their next fire time
in the same transaction that creates the runs, and the unique index on (job, fire time) refuses
a second run outright (that tick then rolls back and the next one starts over: nothing is lost).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from e3backup.server.clock import Clock
from e3backup.server.cluster.leader import Leadership, SoleLeader
from e3backup.server.db.models import Agent, Job, Run
from e3backup.server.services import maintenance

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("queued", "running")


def next_fire(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` fires in ``timezone``, in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    nxt: datetime = croniter(cron, local).get_next(datetime)
    return nxt.astimezone(UTC)


@dataclass(frozen=True)
class JobSchedule:
    job_id: int
    cron: str
    timezone: str
    next_run_at: datetime


@dataclass(frozen=True)
class DueRun:
    job_id: int
    scheduled_for: datetime
    trigger: str  # "schedule", or "catchup" when fire times were missed
    next_run_at: datetime


def due_runs(now: datetime, schedules: Iterable[JobSchedule]) -> list[DueRun]:
    result = []
    for s in schedules:
        if s.next_run_at > now:
            continue
        following = next_fire(s.cron, s.timezone, s.next_run_at)
        missed = following <= now
        scheduled_for = s.next_run_at
        while following <= now:  # the latest missed fire time is what the catch-up stands for
            scheduled_for = following
            following = next_fire(s.cron, s.timezone, following)
        result.append(DueRun(s.job_id, scheduled_for, "catchup" if missed else "schedule", following))
    return result


class Scheduler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        interval_seconds: float,
        maintenance_days: tuple[float, float] = (7.0, 28.0),
        after_tick: Callable[[], object] | None = None,
        leadership: Leadership | None = None,
    ) -> None:
        self._sessions = sessions
        self.leadership: Leadership = leadership or SoleLeader()
        self._after_tick = after_tick  # the alert worker: evaluates and sends, outside the tick's transaction
        self._maintenance_days = maintenance_days
        self._clock = clock
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()  # set on stop and when this replica becomes the leader
        self._thread: threading.Thread | None = None
        self._after_thread: threading.Thread | None = None

    def tick(self) -> list[Run]:
        """Create the runs that are due now; returns them."""
        now = self._clock.now()
        created: list[Run] = []
        with self._sessions() as session:
            jobs = session.scalars(
                select(Job)
                .where(Job.enabled.is_(True), Job.next_run_at.is_not(None), Job.next_run_at <= now)
                .with_for_update(skip_locked=True)
            ).all()
            by_id = {job.id: job for job in jobs}
            schedules = [
                JobSchedule(j.id, j.schedule_cron, j.schedule_timezone, j.next_run_at)
                for j in jobs
                if j.schedule_cron and j.next_run_at
            ]
            for due in due_runs(now, schedules):
                job = by_id[due.job_id]
                job.next_run_at = due.next_run_at
                busy = session.scalar(
                    select(Run.id).where(
                        Run.job_id == job.id, Run.kind == "backup", Run.status.in_(ACTIVE_STATUSES)
                    )
                )
                agent = session.get(Agent, job.agent_id) if job.agent_id is not None else None
                if busy is not None or agent is None or agent.revoked or agent.paused:
                    log.info("job %s due but a run is active or its agent is paused or gone; skipped", job.id)
                    continue
                made = session.scalar(
                    select(Run.id).where(Run.job_id == job.id, Run.scheduled_for == due.scheduled_for)
                )
                if made is not None:  # e.g. the clock went back: that fire time already has its run
                    log.info("job %s: fire time %s already has run %s; skipped", job.id, due.scheduled_for, made)
                    continue
                run = Run(
                    tenant_id=job.tenant_id,
                    job_id=job.id,
                    agent_id=job.agent_id,
                    kind="backup",
                    trigger=due.trigger,
                    status="queued",
                    scheduled_for=due.scheduled_for,
                    created_at=now,
                )
                session.add(run)
                created.append(run)
            created.extend(maintenance.plan(session, now, *self._maintenance_days))
            session.commit()
        return created

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="e3backup-scheduler", daemon=True)
        self._thread.start()
        self.leadership.start(self._leadership_changed)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.leadership.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._after_thread is not None:
            self._after_thread.join(timeout=10)

    def _leadership_changed(self, leader: bool) -> None:
        if leader:
            self._wake.set()  # a new leader schedules at once, not one interval later

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if self.leadership.is_leader():
                self._tick_once()
            self._wake.wait(self._interval)

    def _tick_once(self) -> None:
        try:
            self.tick()
        except IntegrityError:
            log.warning("another scheduler created one of these runs at the same moment; the next tick starts over")
        except Exception:
            log.exception("scheduler tick failed")
        # the alert worker measures storage over the network: on its own thread, so a slow S3
        # endpoint never delays the next run being scheduled (one at a time; a busy one is skipped)
        if self._after_tick is not None and not (self._after_thread and self._after_thread.is_alive()):
            self._after_thread = threading.Thread(target=self._run_after_tick, name="e3backup-alerts", daemon=True)
            self._after_thread.start()

    def _run_after_tick(self) -> None:
        assert self._after_tick is not None
        try:
            self._after_tick()
        except Exception:
            log.exception("alert worker tick failed")


__all__ = ["DueRun", "JobSchedule", "Scheduler", "due_runs", "next_fire"]
