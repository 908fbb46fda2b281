"""Faults: throttled progress, a server outage mid-run, a killed agent, cancel, hostile payloads."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from e3backup.agent.client import ServerClient
from e3backup.agent.outbox import Outbox
from e3backup.agent.reporter import RunReporter
from e3backup.agent.state import RunMarker
from e3backup.api.agent import AgentEvent, PushEventsRequest
from e3backup.engines.files import file_saver

from .conftest import Harness


def _src(tmp_path: Path, size: int = 2_000_000) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(random.Random(5).randbytes(size))
    return src


def test_update_run_is_throttled_by_the_injected_clock(harness: Harness, tmp_path: Path) -> None:
    agent, transport = harness.make_agent()
    job = harness.files_job(agent, _src(tmp_path))
    run_id = harness.run_job(job["id"])
    run = agent.client.next_run(kind="backup").run
    assert run is not None and run.run_id == run_id
    now = [0.0]
    reporter = RunReporter(run_id, agent.client, agent.outbox, interval=1.0, clock=lambda: now[0])
    for i in range(20):  # 5 seconds of progress callbacks every 0.25 s
        reporter.progress({"percent_done": i / 20, "total_bytes": 100, "bytes_done": 2 * i})
        now[0] += 0.25
    assert reporter.updates_sent == 5  # at 0, 1, 2, 3 and 4 s
    assert transport.calls.count("/api/agent/update_run") == 5
    assert harness.run(run_id)["bytes_processed"] == 32


def test_outage_buffers_events_and_status_then_delivers_once_in_order(harness: Harness, tmp_path: Path) -> None:
    agent, transport = harness.make_agent()
    job = harness.files_job(agent, _src(tmp_path))
    run_id = harness.run_job(job["id"])
    run = agent.client.next_run(kind="backup").run
    assert run is not None
    transport.down = True  # the server goes away as the run starts
    outcome = agent.execute(run)
    assert outcome.status.value == "success"
    assert agent.outbox.pending_count() >= 3  # events + final status, on disk
    assert harness.run(run_id)["status"] == "running"  # the server has heard nothing yet
    with pytest.raises(Exception, match="unreachable"):
        agent.outbox.flush(agent.client)

    # a restarted agent process finds the same outbox and delivers it
    transport.down = False
    fresh = Outbox(agent.outbox.dir)
    assert fresh.flush(agent.client) >= 3
    assert fresh.pending_count() == 0
    r = harness.run(run_id)
    assert (r["status"], r["backup_type"], r["snapshot_id"]) == ("success", "full", outcome.snapshot_id)
    events = harness.events(run_id)
    assert [e["seq"] for e in events] == list(range(len(events)))  # in order, none lost
    assert events[0]["code"] == "REPOSITORY_INITIALIZED"

    # a batch resent (the answer was lost) changes nothing on the server
    again = PushEventsRequest(run_id=run_id, events=[AgentEvent.model_validate(
        {k: e[k] for k in ("seq", "ts", "code", "level", "message", "details")}) for e in events])
    answer = agent.client.push_events(again)
    assert (answer.accepted, answer.duplicates) == (0, len(events))
    assert len(harness.events(run_id)) == len(events)


def test_progress_is_dropped_and_resumed_while_the_server_is_down(harness: Harness, tmp_path: Path) -> None:
    agent, transport = harness.make_agent()
    job = harness.files_job(agent, _src(tmp_path))
    run_id = harness.run_job(job["id"])
    assert agent.client.next_run(kind="backup").run is not None
    now = [0.0]
    reporter = RunReporter(run_id, agent.client, agent.outbox, interval=1.0, clock=lambda: now[0])
    transport.down = True
    reporter.progress({"percent_done": 0.1, "bytes_done": 10})  # dropped, no exception
    transport.down = False
    now[0] += 1
    reporter.progress({"percent_done": 0.2, "bytes_done": 20})
    assert harness.run(run_id)["bytes_processed"] == 20


def test_orphaned_run_is_reported_failed_after_a_kill(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, Path("/dev/loop-none"), engine="disk_image", source_path="",
                            disk_source_volume="/dev/loop-none")
    run_id = harness.run_job(job["id"])
    run = agent.client.next_run(kind="backup").run
    assert run is not None
    # what a killed agent leaves: a marker of a dead process, and two events already numbered
    agent.outbox.add_event(run_id, "DISK_IMAGE_STREAM_START", "reading")
    agent.outbox.add_event(run_id, "STORAGE_OK", "ok")
    agent.outbox.flush(agent.client)
    agent.state.begin_run(RunMarker(run_id, "backup", "disk_image", job["id"], pid=999_999_999))
    cleaned: list[str] = []

    def cleanup() -> list[str]:
        cleaned.append(f"vg0/e3backup-snap-run{run_id}")
        return list(cleaned)

    agent.snapshot_cleanup = cleanup
    assert agent.recover_orphans() == [run_id]
    agent.outbox.flush(agent.client)
    r = harness.run(run_id)
    assert r["status"] == "failed" and "killed" in r["error_summary"]
    events = harness.events(run_id)
    assert [e["code"] for e in events] == ["DISK_IMAGE_STREAM_START", "STORAGE_OK", "RUN_ORPHANED"]
    assert events[-1]["details"]["snapshots_removed"] == cleaned
    assert agent.state.current_runs() == []
    assert agent.recover_orphans() == []  # carried on: nothing left to recover


def test_cancel_from_the_dashboard_stops_a_running_backup(harness: Harness, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A big throttled source (a chunk every 20 ms: minutes for the whole file); cancel stops it
    within seconds, no snapshot is saved, the run is marked cancelled."""
    real_stream = file_saver.stream_chunks
    started: list[bool] = []

    def slow_stream(fd: int, window: int = 0) -> Any:
        started.append(True)
        rnd = random.Random(1)
        for _ in range(10_000):
            time.sleep(0.02)  # the throttle of the source, not a timing assumption of the test
            yield rnd.randbytes(64 * 1024)

    monkeypatch.setattr(file_saver, "stream_chunks", slow_stream)
    agent, _ = harness.make_agent()
    src = _src(tmp_path, 2_000_000)
    job = harness.files_job(agent, src)
    run_id = harness.run_job(job["id"])
    agent.start()
    harness.wait_for(lambda: started and harness.run(run_id)["status"] == "running", message="run started")
    t0 = time.monotonic()
    harness.api("POST", f"/api/runs/{run_id}/cancel")
    harness.wait_for(lambda: harness.run(run_id)["status"] == "cancelled", timeout=20, message="cancelled")
    assert time.monotonic() - t0 < 10
    assert "RUN_CANCELLED" in harness.codes(run_id)
    assert harness.run(run_id)["snapshot_id"] is None
    monkeypatch.setattr(file_saver, "stream_chunks", real_stream)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda run: run.update(engine="rm -rf /"), "engine"),
        (lambda run: run.update(source_paths=["/x"] * 5000), "source_paths"),
        (lambda run: run.update(source_path="/srv/../etc/shadow"), ".."),
        (lambda run: run.update(source_path="relative/path"), "absolute"),
        (lambda run: run.update(exclude=["*.tmp"] * 20_000), "exclude"),
        (lambda run: run.update(job_name="x" * 2_000_000), "payload"),
    ],
)
def test_hostile_next_run_payloads_are_refused(harness: Harness, tmp_path: Path, tamper: Any,
                                               reason: str) -> None:
    agent, transport = harness.make_agent()
    job = harness.files_job(agent, _src(tmp_path))
    run_id = harness.run_job(job["id"])

    def rewrite(path: str, body: Any) -> Any:
        if path.endswith("/next_run") and body.get("run"):
            tamper(body["run"])
        return body

    transport.rewrite = rewrite
    agent.poll_once()
    r = harness.finish(agent, run_id)
    assert r["status"] == "failed" and "refused" in r["error_summary"], r
    events = harness.events(run_id)
    assert [e["code"] for e in events] == ["RUN_REFUSED"]
    assert reason in events[0]["message"]
    assert not (harness.tmp / "repo").exists()  # nothing ran


def test_restore_outside_the_allowed_roots_is_refused(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, _src(tmp_path))
    run = harness.run_job(job["id"])
    agent.poll_once()
    snap = harness.finish(agent, run)["snapshot_id"]
    for target in ("/etc", str(harness.tmp / "restores" / ".." / "escape")):
        cmd = harness.command(agent, "restore", job["id"], snapshot_id=snap, target_path=target)
        agent.commands.poll_once()
        r = harness.finish(agent, cmd["run_id"])
        assert r["status"] == "failed"
        assert harness.codes(cmd["run_id"]) == ["RUN_REFUSED"]
        assert harness.api("GET", f"/api/commands/{cmd['id']}").json()["status"] == "failed"
    assert not (harness.tmp / "escape").exists()
    assert not os.path.exists("/etc/" + str(tmp_path).lstrip("/"))


def test_client_maps_errors(harness: Harness) -> None:
    from e3backup.agent.client import AuthRejected, ServerUnavailable
    from e3backup.agent.transport import HttpxTransport

    from .conftest import FlakyTransport

    bad = ServerClient(HttpxTransport(harness.client), "e3a_forged", attempts=1)
    with pytest.raises(AuthRejected):
        bad.poll_commands()
    flaky = FlakyTransport(HttpxTransport(harness.client))
    flaky.down = True
    sleeps: list[float] = []
    down = ServerClient(flaky, "e3a_x", attempts=3, backoff=0.5, sleep=sleeps.append)
    with pytest.raises(ServerUnavailable):
        down.poll_commands()
    assert sleeps == [0.5, 1.0]  # exponential backoff between the attempts
