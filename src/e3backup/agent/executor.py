"""Carry out one run: marker on disk, checks, engine dispatch, reporting, outcome into the outbox.

``RunExecutor.start`` runs ``execute`` in a thread of its own. ``execute`` registers the run in
``ActiveRuns`` (so a cancel command reaches it), refuses what ``validate`` refuses, picks the
dispatch-table entry, resolves the run into the engine's typed options, opens the repository
(storage preflight first) and calls the engine under the run contract. However the engine ends,
the run ends with one final status: a ``Cancelled`` engine gives ``CANCELLED`` and
``RUN_CANCELLED`` whatever the engine (``FAILED`` when the agent itself is stopping).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..api.agent import CommandAck, RunAssignment, UpdateRunRequest
from ..api.common import CommandStatus, RunKind, RunStatus
from ..api.requests import MaintenanceRequest, RestoreRequest
from ..errors import Cancelled, E3Error, LockError, RepoError, StoreError
from ..events import EventCode
from ..progress import Progress
from .active import ActiveRuns
from .client import MalformedRun, ServerClient
from .config import AgentConfig
from .destination import StorageUnavailable, open_repository, preflight
from .engines import EngineEntry, EngineUnavailable, JobContext, Outcome, pick
from .outbox import Outbox
from .proofs import prove_after_backup
from .reporter import RunReporter
from .state import RunMarker, StateDir
from .validate import RunRefused, validate_backup, validate_destination, validate_maintenance, validate_restore

if TYPE_CHECKING:  # the repository and the engines are imported at the first run (an idle agent stays small)
    from ..repo import KDFParams, Repository
    from ..storage.probe import ProbeResult

log = logging.getLogger(__name__)

STOPPING = "the agent is stopping"


class RunExecutor:
    def __init__(
        self,
        config: AgentConfig,
        client: ServerClient,
        state: StateDir,
        active: ActiveRuns,
        *,
        host: str,
        platform: str,
        clock: Callable[[], float],
        kdf: KDFParams | None,
        prober: Callable[[str], ProbeResult],
    ) -> None:
        self.config = config
        self.client = client
        self.state = state
        self.outbox: Outbox = state.outbox
        self.active = active
        self.host = host
        self.platform = platform
        self.clock = clock
        self.kdf = kdf
        self.prober = prober
        self._threads: list[threading.Thread] = []

    # -- threads ------------------------------------------------------------------------------------

    def start(self, run: RunAssignment, command_id: int | None = None,
              release: Callable[[], None] | None = None) -> threading.Thread:
        """Run ``execute`` in a thread; ``release`` is called when it ends (a poll slot)."""
        def body() -> None:
            try:
                self.execute(run, command_id)
            finally:
                if release is not None:
                    release()

        t = threading.Thread(target=body, name=f"run-{run.run_id}", daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()
        return t

    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def refuse_malformed(self, e: MalformedRun, command_id: int | None = None) -> None:
        """A run the server handed out that does not parse: reported failed, never run."""
        log.error("refused a run the server handed out: %s", e)
        if e.run_id is not None:
            self.outbox.add_event(e.run_id, EventCode.RUN_REFUSED.value, f"run refused: {e.reason}",
                                  details={"reason": e.reason})
            self.outbox.add_final(UpdateRunRequest.model_validate(
                {"run_id": e.run_id, "status": RunStatus.FAILED, "error_summary": f"refused by the agent: {e.reason}"}))
        if command_id is not None:
            self.outbox.add_ack(CommandAck(command_id=command_id, status=CommandStatus.FAILED,
                                           error=f"refused by the agent: {e.reason}"))

    # -- one run ------------------------------------------------------------------------------------

    def execute(self, run: RunAssignment, command_id: int | None = None) -> Outcome:
        reporter = RunReporter(run.run_id, self.client, self.outbox, self.config.progress_interval_seconds,
                               self.clock)
        self.active.add(reporter)
        self.state.begin_run(RunMarker(run.run_id, run.kind.value, run.engine.value, run.job_id, command_id))
        log.info("run %s: %s %s of job %s (%s) started", run.run_id, run.engine.value, run.kind.value,
                 run.job_id, run.job_name)
        try:
            outcome = self._outcome(run, reporter)
            reporter.finish(outcome.status, snapshot_id=outcome.snapshot_id, backup_type=outcome.backup_type,
                            error=outcome.error, extra=outcome.totals)
            if command_id is not None:
                ok = outcome.status in (RunStatus.SUCCESS, RunStatus.WARNING)
                self.outbox.add_ack(CommandAck(
                    command_id=command_id,
                    status=CommandStatus.COMPLETED if ok else CommandStatus.FAILED,
                    result=outcome.summary or None,
                    error=None if ok else (outcome.error or outcome.status.value)[:4000],
                ))
            self.state.end_run(run.run_id)
        finally:
            self.active.remove(run.run_id)
        log.info("run %s finished: %s%s", run.run_id, outcome.status.value,
                 f" ({outcome.error})" if outcome.error else "")
        return outcome

    def _outcome(self, run: RunAssignment, reporter: RunReporter) -> Outcome:
        from ..engines.files.archiver import SourceMissing

        try:
            return self._dispatch(run, reporter)
        except RunRefused as e:
            reporter.event(EventCode.RUN_REFUSED, f"run refused: {e}", field=e.field, reason=e.reason)
            return Outcome(RunStatus.FAILED, error=f"refused by the agent: {e}")
        except EngineUnavailable as e:
            reporter.event(EventCode.ENGINE_UNAVAILABLE, f"engine {run.engine.value}: {e}",
                           engine=run.engine.value, platform=self.platform)
            return Outcome(RunStatus.FAILED, error=f"engine {run.engine.value} unavailable: {e}")
        except StorageUnavailable as e:
            return Outcome(RunStatus.FAILED, error=str(e))
        except SourceMissing as e:
            if EventCode.SOURCE_MISSING.value not in reporter.codes:  # the precheck: not yet said
                for path, why in e.missing:
                    reporter.event(EventCode.SOURCE_MISSING, f"cannot back up {path}: {why}", path=path)
            return Outcome(RunStatus.FAILED, error=str(e))
        except Cancelled as e:
            reason = reporter.cancel_reason or "cancelled"
            if EventCode.RUN_CANCELLED.value not in reporter.codes:
                reporter.event(EventCode.RUN_CANCELLED, f"run cancelled ({reason}): {e}", reason=reason)
            if reason == STOPPING:
                return Outcome(RunStatus.FAILED, error="the agent was stopped during the run")
            return Outcome(RunStatus.CANCELLED, error=reason)
        except E3Error as e:
            if isinstance(e, LockError):
                reporter.event(EventCode.REPOSITORY_LOCKED, str(e))
            elif isinstance(e, RepoError | StoreError):
                reporter.event(EventCode.REPOSITORY_FAILED, str(e), error_type=type(e).__name__)
            return Outcome(RunStatus.FAILED, error=str(e))
        except Exception as e:
            log.exception("run %s: unexpected error", run.run_id)
            return Outcome(RunStatus.FAILED, error=f"internal error: {type(e).__name__}: {e}")

    def _entry(self, run: RunAssignment) -> tuple[EngineEntry[object, object], JobContext]:
        """Check the run, pick its engine and read its typed request."""
        request: RestoreRequest | MaintenanceRequest | None = None
        validate_destination(run, self.config)
        if run.kind is RunKind.BACKUP:
            validate_backup(run, self.config)
        elif run.kind is RunKind.RESTORE:
            request = validate_restore(run, self.config)
        else:
            request = validate_maintenance(run)
        entry = pick(run.kind, run.engine, self.platform, request)
        return entry, JobContext(run, self.config, self.host, request, self.platform)

    def _dispatch(self, run: RunAssignment, reporter: RunReporter) -> Outcome:
        outcome = self._engine_outcome(run, reporter)
        if outcome.status is RunStatus.SUCCESS and reporter.problems:
            # a run that warned is not a success (the fleet view must show it)
            outcome.status = RunStatus.WARNING
            outcome.error = outcome.error or f"{len(reporter.problems)} warning(s): {reporter.problems[0]}"
        return outcome

    def _engine_outcome(self, run: RunAssignment, reporter: RunReporter) -> Outcome:
        entry, ctx = self._entry(run)
        assert entry.options is not None and entry.outcome is not None
        options = entry.options(ctx)
        if entry.precheck is not None:
            entry.precheck(options)
        if reporter.cancel.is_set():
            raise Cancelled("cancelled before it started")
        interval = min(0.25, self.config.progress_interval_seconds)
        with Progress(mode="quiet", interval=interval, callback=reporter.progress) as progress:
            if entry.direct is not None:  # no repository (sync): the storage preflight only
                preflight(run.destination, reporter, self.prober)
                outcome = entry.outcome(entry.direct(options, progress, reporter.on_engine_event, reporter.cancel))
            else:
                assert entry.run is not None
                repo = open_repository(run.destination, reporter, create=entry.create_repo, kdf=self.kdf,
                                       prober=self.prober, limit_upload=run.policy.limit_upload)
                try:
                    result = entry.run(repo, options, progress, reporter.on_engine_event, reporter.cancel)
                    outcome = entry.outcome(result)
                    if run.kind is RunKind.BACKUP and outcome.snapshot_id:
                        self._retention(repo, run, reporter, outcome)
                        prove_after_backup(repo, run, outcome.snapshot_id, reporter, self.outbox,
                                           self.config.state_dir, self.platform)
                finally:
                    repo.close()
        snap = progress.snapshot()
        elapsed = float(outcome.summary.get("duration") or snap.get("seconds_elapsed") or 0.0)
        done = int(snap["bytes_done"])
        outcome.totals = {
            **outcome.totals,
            "bytes_total": max(int(snap["total_bytes"]), done),
            "bytes_processed": done,
            "files_total": int(snap["total_files"]),
            "files_processed": int(snap["files_done"]),
            # the run's average: the last progress update may be 0 B/s on a quick incremental
            "speed_bytes_per_sec": done / elapsed if elapsed > 0 else 0.0,
            "summary": _summary(outcome.summary),
        }
        return outcome

    def _retention(self, repo: Repository, run: RunAssignment, reporter: RunReporter, outcome: Outcome) -> None:
        """Forget by the job's retention after a backup that saved a snapshot (this host's
        snapshots of this job only); the scheduled prune frees the data. A failure warns."""
        keep = run.retention.model_dump(exclude_none=True)
        if not keep or run.destination.type == "gateway":
            return  # gateway mode: the server's maintenance worker applies it (the agent may not delete)
        from ..maintenance import apply_retention
        from ..repo.forget import ForgetPolicy

        policy = ForgetPolicy(**keep)
        try:
            result = apply_retention(repo, policy, self.host, f"job:{run.job_id}")
        except E3Error as e:
            reporter.event(EventCode.RETENTION_FAILED, f"retention ({policy.describe()}) not applied: {e}")
            return
        reporter.event(EventCode.RETENTION_APPLIED,
                       f"retention ({policy.describe()}): {len(result.removed)} snapshot(s) forgotten, "
                       f"{result.kept} kept", removed=result.removed, kept=result.kept)
        outcome.totals["snapshots_removed"] = result.removed


_SUMMARY_KEYS = (
    "files_new", "files_changed", "files_unmodified", "dirs_new", "dirs_changed", "dirs_unmodified",
    "bytes_read", "bytes_added", "bytes_stored", "total_files_processed", "total_bytes_processed",
    "chunks_total", "chunks_read", "chunks_reused", "chunks_zero", "chunks_known", "chunks_new",
    "plan_bytes", "device_size", "recovered_bytes", "duration", "error_count",
)


def _summary(summary: dict[str, Any]) -> dict[str, float]:
    """The engine summary's counters the run page shows (numbers only; no paths or messages)."""
    return {k: summary[k] for k in _SUMMARY_KEYS if isinstance(summary.get(k), int | float)
            and not isinstance(summary.get(k), bool)}


__all__ = ["STOPPING", "RunExecutor"]
