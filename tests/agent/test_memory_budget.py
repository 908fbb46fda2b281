"""The job policy's ``max_memory_mb`` reaches the engines, tested through the agent."""

from __future__ import annotations

import random
from pathlib import Path

from .conftest import Harness


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(random.Random(29).randbytes(1_500_000))
    return src


def test_a_budget_too_small_fails_the_backup_at_the_start(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, _source(tmp_path), policy={"max_memory_mb": 64})
    run = harness.run_job(job["id"])
    agent.poll_once()
    r = harness.finish(agent, run)
    assert r["status"] == "failed" and not r["snapshot_id"], r
    assert "memory budget 64 MiB is too small for this files backup: it needs at least" in r["error_summary"]


def test_a_small_budget_lowers_the_restore_workers(harness: Harness, tmp_path: Path) -> None:
    """96 MiB leaves 24 MiB of buffers: 4 restore workers instead of the policy's default 8 (which
    ``test_policy.py`` sees without a budget)."""
    src = _source(tmp_path)
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, src, policy={"max_memory_mb": 96})
    run = harness.run_job(job["id"])
    agent.poll_once()
    finished = harness.finish(agent, run)
    assert finished["status"] == "success", finished
    target = harness.tmp / "restores" / "r"
    cmd = harness.command(agent, "restore", job["id"], snapshot_id=finished["snapshot_id"], target_path=str(target))
    agent.commands.poll_once()
    assert harness.finish(agent, cmd["run_id"])["status"] == "success"
    assert harness.api("GET", f"/api/commands/{cmd['id']}").json()["result"]["workers"] == 4
    assert (target / str(src).lstrip("/") / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
