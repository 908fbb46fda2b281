"""The agent's state directory: current-run markers, last contact, the outbox.

A run in progress has a marker ``runs/<run id>.json`` (written before the engine starts,
removed after its final status is in the outbox). A marker found at start-up belongs to a run
the agent was killed in: it is reported failed (``RUN_ORPHANED``), its snapshots are cleaned
up, and the agent carries on.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .outbox import Outbox, _write_atomic


@dataclass
class RunMarker:
    run_id: int
    kind: str
    engine: str
    job_id: int | None = None
    command_id: int | None = None
    pid: int = field(default_factory=os.getpid)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


class StateDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.runs = self.path / "runs"
        self.runs.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        self.outbox = Outbox(self.path / "outbox")
        self._contact_written = 0.0

    # -- current runs -----------------------------------------------------------------------------

    def begin_run(self, marker: RunMarker) -> None:
        _write_atomic(self.runs / f"{marker.run_id}.json", json.dumps(asdict(marker)).encode())

    def end_run(self, run_id: int) -> None:
        (self.runs / f"{run_id}.json").unlink(missing_ok=True)

    def current_runs(self) -> list[RunMarker]:
        out = []
        for p in sorted(self.runs.glob("*.json")):
            try:
                out.append(RunMarker(**json.loads(p.read_text())))
            except (OSError, ValueError, TypeError):
                p.unlink(missing_ok=True)
        return out

    # -- last contact -----------------------------------------------------------------------------

    def record_contact(self, min_interval: float = 2.0) -> None:
        now = time.monotonic()
        if now - self._contact_written < min_interval:
            return
        self._contact_written = now
        _write_atomic(self.path / "last-contact", datetime.now(UTC).isoformat().encode())

    def last_contact(self) -> str | None:
        try:
            return (self.path / "last-contact").read_text().strip()
        except FileNotFoundError:
            return None

    def summary(self) -> dict[str, Any]:
        return {
            "last_contact": self.last_contact(),
            "current_runs": [asdict(m) for m in self.current_runs()],
            "outbox_pending": self.outbox.pending_count(),
        }


__all__ = ["RunMarker", "StateDir"]
