"""The session keeper: one thread that keeps a recovery session alive and its reports flowing.

Every ``poll_interval`` (5 s) it delivers the outbox (events, then the final status, in order;
a server that does not answer keeps them for the next round), sends the run's ``running`` status
once a restore started, polls for cancel, and every ``refresh_interval`` (5 minutes, as the
seeds' console) calls ``refresh_session``: the server slides the expiry to now + 6 h once it is
within 30 minutes, so a restore of any length keeps its session. A refused refresh (revoked,
expired) cancels the restore. It stops once the final status is delivered: the session ends with
its run. Time goes through a ``Timer``, so tests run hours of it at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime
from typing import Protocol

from ..agent.client import AgentError, AuthRejected
from ..agent.outbox import Outbox
from ..agent.reporter import RunReporter
from ..api.agent import UpdateRunRequest
from .client import RecoveryClient

log = logging.getLogger(__name__)


class Timer(Protocol):
    def now(self) -> float: ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set (True) or ``seconds`` passed (False)."""
        ...


class RealTimer:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(seconds)


class SessionKeeper:
    def __init__(
        self,
        client: RecoveryClient,
        outbox: Outbox,
        reporter: RunReporter,
        timer: Timer,
        refresh_interval: float,
        poll_interval: float,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.reporter = reporter
        self.timer = timer
        self.refresh_interval = refresh_interval
        self.poll_interval = poll_interval
        self.restoring = False
        """Set when the restore starts: from then on ``running`` is sent and cancel polled."""
        self.final_queued = False
        self.delivered = threading.Event()
        self.refreshes = 0
        self.session_expires_at: datetime | None = None
        self._running_sent = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recovery-session", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def final(self) -> None:
        """The final status is in the outbox: deliver it now, then stop."""
        self.final_queued = True
        self.outbox.wakeup.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.outbox.wakeup.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        next_refresh = self.timer.now() + self.refresh_interval
        while not self._stop.is_set():
            self.outbox.wakeup.clear()  # before flushing: an entry added meanwhile wakes the next wait
            self._send_running()
            with contextlib.suppress(AgentError):
                self.outbox.flush(self.client)
            if self.final_queued and self.outbox.pending_count() == 0:
                self.delivered.set()
                return  # the run is over on the server: the session ended with it
            if self.timer.now() >= next_refresh:
                try:
                    self.session_expires_at = self.client.refresh_session().session_expires_at
                    self.refreshes += 1
                    next_refresh = self.timer.now() + self.refresh_interval
                except AuthRejected as e:
                    log.error("the recovery session was refused: %s", e.detail)
                    self.reporter.request_cancel(f"the recovery session ended: {e.detail}")
                except AgentError as e:
                    log.warning("session refresh failed (%s); trying again", e)
            if self.restoring and not self.final_queued:
                try:
                    if self.client.poll_cancel().cancel_requested:
                        self.reporter.request_cancel("cancelled from the dashboard")
                except AgentError as e:
                    log.debug("cancel poll failed (%s)", e)
            self.timer.wait(self.outbox.wakeup, self.poll_interval)

    def _send_running(self) -> None:
        if self._running_sent or not self.restoring or self.final_queued:
            return
        try:
            running = UpdateRunRequest.model_validate({"run_id": self.reporter.run_id, "status": "running"})
            self.client.update_run(running, attempts=1)
            self._running_sent = True
        except AgentError as e:
            log.debug("running status not delivered yet (%s)", e)


__all__ = ["RealTimer", "SessionKeeper", "Timer"]
