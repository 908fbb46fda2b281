"""Events, final run statuses and command results waiting for the server, on disk.

Each entry is one JSON file ``entries/<n>.json`` (``n`` increasing), written to a temporary
name, fsynced and renamed, so a kill leaves either the whole entry or none. ``flush`` sends
the entries in ``n`` order: consecutive events of one run as one ``push_events`` batch, a final
status as ``update_run``, a command result as ``ack_command``; an entry is deleted only after
the server took it. A server that is down stops the flush; the next one resumes at the same
entry, so the order holds and a batch sent twice is harmless: the server keeps one event per
(run, ``seq``), a resent final status or acknowledgement changes nothing.

Event sequence numbers are the agent's, per run, kept in ``seq/<run id>`` so they keep rising
across restarts (an orphaned run's last event does not reuse a delivered number).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..api.agent import AgentEvent, CommandAck, PushEventsRequest, UpdateRunRequest
from ..api.common import fit_event_details
from ..api.proofs import ProofReport
from .client import ServerClient, ServerRefused

log = logging.getLogger(__name__)

MAX_BATCH = 500


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Outbox:
    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.entries = self.dir / "entries"
        self.seqs = self.dir / "seq"
        for d in (self.entries, self.seqs):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stray in self.entries.glob("*.tmp"):
            stray.unlink()  # a write a kill interrupted: never renamed, never acknowledged
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._next = max((int(p.stem) for p in self.entries.glob("*.json")), default=0) + 1
        self._seq: dict[int, int] = {}
        self.wakeup = threading.Event()

    # -- adding -----------------------------------------------------------------------------------

    def _add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            n = self._next
            self._next += 1
            _write_atomic(self.entries / f"{n:012d}.json", json.dumps(entry).encode())
        self.wakeup.set()

    def next_seq(self, run_id: int) -> int:
        """The next event number of the run (persisted before it is used)."""
        with self._lock:
            if run_id not in self._seq:
                try:
                    self._seq[run_id] = int((self.seqs / str(run_id)).read_text())
                except (FileNotFoundError, ValueError):
                    self._seq[run_id] = 0
            seq = self._seq[run_id]
            self._seq[run_id] = seq + 1
            _write_atomic(self.seqs / str(run_id), str(seq + 1).encode())
            return seq

    def add_event(self, run_id: int, code: str, message: str = "", level: str | None = None,
                  details: dict[str, Any] | None = None, ts: datetime | None = None) -> int:
        seq = self.next_seq(run_id)
        event = AgentEvent(seq=seq, ts=ts or datetime.now(UTC), code=code, level=level,  # type: ignore[arg-type]
                           message=message[:8000], details=fit_event_details(details or {}))
        self._add({"kind": "event", "run_id": run_id, "event": event.model_dump(mode="json")})
        return seq

    def add_final(self, update: UpdateRunRequest) -> None:
        self._add({"kind": "update", "run_id": update.run_id,
                   "update": update.model_dump(mode="json", exclude_unset=True)})

    def add_ack(self, ack: CommandAck) -> None:
        self._add({"kind": "ack", "ack": ack.model_dump(mode="json", exclude_unset=True)})

    def add_proof(self, report: ProofReport) -> None:
        self._add({"kind": "proof", "run_id": report.run_id, "proof": report.model_dump(mode="json")})

    # -- delivering -------------------------------------------------------------------------------

    def _pending(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        for p in sorted(self.entries.glob("*.json")):
            try:
                yield p, json.loads(p.read_text())
            except (OSError, ValueError) as e:
                log.error("outbox entry %s is unreadable (%s); dropped", p.name, e)
                p.unlink(missing_ok=True)

    def has_final(self, run_id: int) -> bool:
        """Whether a final status of the run waits here (it finished; only delivery is left)."""
        return any(e["kind"] == "update" and e["run_id"] == run_id for _, e in self._pending())

    def pending_count(self) -> int:
        return sum(1 for _ in self.entries.glob("*.json"))

    def flush(self, client: ServerClient) -> int:
        """Deliver everything in order; returns how many entries went. Raises
        ``ServerUnavailable`` (entries kept) when the server cannot be reached."""
        delivered = 0
        with self._flush_lock:
            batch: list[tuple[Path, dict[str, Any]]] = []
            for path, entry in self._pending():
                if batch and (entry["kind"] != "event" or entry["run_id"] != batch[0][1]["run_id"]
                              or len(batch) >= MAX_BATCH):
                    delivered += self._send_events(client, batch)
                    batch = []
                if entry["kind"] == "event":
                    batch.append((path, entry))
                    continue
                delivered += self._send_one(client, path, entry)
            if batch:
                delivered += self._send_events(client, batch)
        return delivered

    def _send_events(self, client: ServerClient, batch: list[tuple[Path, dict[str, Any]]]) -> int:
        run_id = batch[0][1]["run_id"]
        req = PushEventsRequest(run_id=run_id, events=[AgentEvent.model_validate(e["event"]) for _, e in batch])
        try:
            client.push_events(req)
        except ServerRefused as e:
            log.error("server refused %d event(s) of run %s (%s); dropped", len(batch), run_id, e.detail)
        for path, _ in batch:
            path.unlink(missing_ok=True)
        return len(batch)

    def _send_one(self, client: ServerClient, path: Path, entry: dict[str, Any]) -> int:
        try:
            if entry["kind"] == "update":
                client.update_run(UpdateRunRequest.model_validate(entry["update"]))
                self._forget_run(int(entry["run_id"]))
            elif entry["kind"] == "proof":
                client.report_proof(ProofReport.model_validate(entry["proof"]))
            else:
                client.ack_command(CommandAck.model_validate(entry["ack"]))
        except ServerRefused as e:
            log.error("server refused outbox entry %s (%s); dropped", path.name, e.detail)
        path.unlink(missing_ok=True)
        return 1

    def _forget_run(self, run_id: int) -> None:
        with self._lock:
            self._seq.pop(run_id, None)
            (self.seqs / str(run_id)).unlink(missing_ok=True)


__all__ = ["MAX_BATCH", "Outbox"]
