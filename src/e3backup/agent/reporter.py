"""What one run tells the server: progress (throttled, best effort), events and the outcome.

Progress goes straight to ``update_run`` at most once per ``interval`` (the engines' progress
thread calls ``progress`` more often); a failed send is dropped and the next one resumes.
Its answer carries ``cancel_requested``, which sets the run's cancel event. Events and the final
status go through the outbox: on disk first, then delivered in order when the server answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..api.agent import UpdateRunRequest
from ..api.common import BackupType, RunStatus
from ..events import CODES, Event, EventCode
from .client import AgentError, ServerClient
from .logs import SECRETS
from .outbox import Outbox

log = logging.getLogger(__name__)


def _default_level(code: str) -> str:
    try:
        return CODES[EventCode(code)].level.value
    except ValueError:
        return "info"


class RunReporter:
    def __init__(
        self,
        run_id: int,
        client: ServerClient,
        outbox: Outbox,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self.client = client
        self.outbox = outbox
        self.interval = interval
        self.clock = clock
        self.cancel = threading.Event()
        self.cancel_reason = ""
        self.codes: list[str] = []
        self.problems: list[str] = []  # messages of warning and error events, in order
        self.updates_sent = 0
        self._last: float | None = None
        self._lock = threading.Lock()

    # -- events -----------------------------------------------------------------------------------

    def event(self, code: EventCode | str, message: str, level: str | None = None, **details: Any) -> None:
        code = str(code)
        self.codes.append(code)
        if (level or _default_level(code)) in ("warning", "error"):
            self.problems.append(f"{code}: {message}")
        log.info("run %s: %s %s", self.run_id, code, message)
        self.outbox.add_event(self.run_id, code, SECRETS.redact(message), level, details)

    def event_apart(self, code: EventCode | str, message: str, **details: Any) -> None:
        """An event that does not decide the run's status, whatever its level: the proof of
        restore has its own verdict and its own alert (one incident per problem)."""
        problems = len(self.problems)
        self.event(code, message, **details)
        del self.problems[problems:]

    def on_engine_event(self, ev: Event) -> None:
        """The engines' ``on_event`` sink: forwarded as it happens."""
        self.event(ev.code, ev.message, ev.level.value if ev.level else None, **ev.details)

    # -- progress ---------------------------------------------------------------------------------

    def request_cancel(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    def progress(self, snap: dict[str, Any]) -> None:
        """A ``Progress`` callback: sends at most one ``update_run`` per interval."""
        now = self.clock()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                return
            self._last = now
        pct = float(snap.get("percent_done", 0.0)) * 100
        eta = snap.get("seconds_remaining")
        req = UpdateRunRequest.model_validate({
            "run_id": self.run_id,
            "progress_pct": min(max(pct, 0.0), 100.0),
            "bytes_total": max(int(snap.get("total_bytes", 0)), 0),
            "bytes_processed": max(int(snap.get("bytes_done", 0)), 0),
            "files_total": max(int(snap.get("total_files", 0)), 0),
            "files_processed": max(int(snap.get("files_done", 0)), 0),
            "speed_bytes_per_sec": max(float(snap.get("bytes_per_second", 0)), 0.0),
            "eta_seconds": max(int(eta), 0) if eta is not None else None,
        })
        self.send_progress(req)

    def send_progress(self, req: UpdateRunRequest) -> None:
        try:
            answer = self.client.update_run(req, attempts=1)
        except AgentError as e:
            log.debug("run %s: progress not delivered (%s); the next update resumes", self.run_id, e)
            return
        self.updates_sent += 1
        if answer.cancel_requested:
            self.request_cancel("cancelled from the dashboard")

    # -- outcome ----------------------------------------------------------------------------------

    def finish(
        self,
        status: RunStatus,
        *,
        snapshot_id: str | None = None,
        backup_type: BackupType | None = None,
        error: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Queue the final status (after every event of the run, so it is delivered last)."""
        fields: dict[str, Any] = {"run_id": self.run_id, "status": status}
        if snapshot_id:
            fields["snapshot_id"] = snapshot_id
        if backup_type is not None:
            fields["backup_type"] = backup_type
        if error:
            fields["error_summary"] = SECRETS.redact(error)[:4000]
        fields.update(extra or {})
        self.outbox.add_final(UpdateRunRequest.model_validate(fields))


__all__ = ["RunReporter"]
