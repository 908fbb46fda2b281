"""Cancel from the dashboard, whatever the engine: the run ends ``cancelled`` with ``RUN_CANCELLED``.

A real server (in-process app) and a real agent; the source of each run is throttled (a file
restore reading its packs slowly, a maintenance with a slow repack stage) so the cancel lands
while the engine works. The files backup has the same test in ``test_faults.py``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e3backup import maintenance
from e3backup.restore import files as files_restore
from tests.helpers import restic

from .conftest import REPO_PASSWORD, Harness


def _tree(root: Path) -> Path:
    rnd = random.Random(3)
    root.mkdir(parents=True)
    for i in range(6):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(300_000))
    return root


def _cancel_and_wait(harness: Harness, run_id: int) -> dict[str, Any]:
    harness.api("POST", f"/api/runs/{run_id}/cancel")
    harness.wait_for(lambda: harness.run(run_id)["status"] == "cancelled", timeout=20, message="cancelled")
    return harness.run(run_id)


def test_cancel_stops_a_running_file_restore(harness: Harness, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    agent, _ = harness.make_agent()
    src = _tree(tmp_path / "src")
    job = harness.files_job(agent, src)
    run = harness.run_job(job["id"])
    agent.poll_once()
    snap = harness.finish(agent, run)["snapshot_id"]

    real = files_restore.read_blobs
    started: list[bool] = []

    def slow_read_blobs(repo: Any, pack_id: str, blobs: Any, **kw: Any) -> Iterator[Any]:
        started.append(True)
        for item in real(repo, pack_id, blobs, **kw):
            for _ in range(1000):  # each blob handed out again and again: minutes for the pack
                time.sleep(0.02)  # the throttle of the source, not a timing assumption of the test
                yield item

    monkeypatch.setattr(files_restore, "read_blobs", slow_read_blobs)
    target = harness.tmp / "restores" / "r"
    cmd = harness.command(agent, "restore", job["id"], snapshot_id=snap, target_path=str(target))
    agent.start()
    harness.wait_for(lambda: started and harness.run(cmd["run_id"])["status"] == "running", message="restore started")
    r = _cancel_and_wait(harness, cmd["run_id"])
    assert "RUN_CANCELLED" in harness.codes(cmd["run_id"])
    assert r["error_summary"] == "cancelled from the dashboard"
    harness.wait_for(lambda: harness.api("GET", f"/api/commands/{cmd['id']}").json()["status"] == "failed",
                     message="command failed")
    assert target.is_dir()  # what was restored so far stays where it was written


def test_cancel_stops_a_running_maintenance_and_leaves_the_repository_sound(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, _ = harness.make_agent()
    src = _tree(tmp_path / "src")
    job = harness.files_job(agent, src, retention={"keep_last": 1})
    for i in range(2):
        (src / "changing.bin").write_bytes(random.Random(i).randbytes(400_000))
        run = harness.run_job(job["id"])
        agent.poll_once()
        assert harness.finish(agent, run)["status"] == "success"

    real = maintenance.execute
    started: list[bool] = []

    def slow_execute(repo: Any, plan: Any, progress: Any = None) -> Any:
        started.append(True)
        for i in range(1000):  # a slow stage before the real prune: minutes in all
            time.sleep(0.02)  # the throttle of the storage, not a timing assumption of the test
            progress("repack", i, 1000)
        return real(repo, plan, progress)

    monkeypatch.setattr(maintenance, "execute", slow_execute)
    cmd = harness.command(agent, "maintenance", job["id"], mode="quick")
    agent.start()
    harness.wait_for(lambda: started and harness.run(cmd["run_id"])["status"] == "running",
                     message="maintenance started")
    _cancel_and_wait(harness, cmd["run_id"])
    events = harness.events(cmd["run_id"])
    cancelled = [e for e in events if e["code"] == "RUN_CANCELLED"]
    assert cancelled and "consistent" in cancelled[0]["message"]
    # the repository is sound (restic as the judge) and the next maintenance finishes the work
    restic(harness.tmp / "repo", "check", password=REPO_PASSWORD)
    monkeypatch.setattr(maintenance, "execute", real)
    again = harness.command(agent, "maintenance", job["id"], mode="quick")
    harness.wait_for(lambda: harness.run(again["run_id"])["status"] == "success", timeout=60,
                     message="second maintenance")
    restic(harness.tmp / "repo", "check", "--read-data", password=REPO_PASSWORD)
