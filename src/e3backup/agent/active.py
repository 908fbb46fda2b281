"""The runs in progress on this agent, by run ID: what a cancel command or a stop reaches."""

from __future__ import annotations

import threading

from .reporter import RunReporter


class ActiveRuns:
    def __init__(self) -> None:
        self._runs: dict[int, RunReporter] = {}
        self._lock = threading.Lock()

    def add(self, reporter: RunReporter) -> None:
        with self._lock:
            self._runs[reporter.run_id] = reporter

    def remove(self, run_id: int) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def cancel(self, run_id: int, reason: str) -> bool:
        """Set the run's cancel event; False when the run is not running here."""
        with self._lock:
            reporter = self._runs.get(run_id)
        if reporter is None:
            return False
        reporter.request_cancel(reason)
        return True

    def cancel_all(self, reason: str) -> None:
        with self._lock:
            reporters = list(self._runs.values())
        for r in reporters:
            r.request_cancel(reason)

    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._runs)


__all__ = ["ActiveRuns"]
