"""Policy flags that reach the agent's engines, tested through the agent."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from .conftest import Harness


@pytest.mark.parametrize(
    ("policy", "workers"),
    [
        ({}, 8),  # the default
        ({"restore_kopia_parallel": 3}, 3),  # the seeds' name for the files restore's parallelism
        ({"restore_parallel_workers": 5}, 5),  # restore_kopia_parallel defaults to the workers...
        ({"restore_parallel_workers": 40}, 32),  # ...capped at 32, as the seeds say
        ({"restore_parallel_workers": 5, "restore_kopia_parallel": 2}, 2),
    ],
)
def test_files_restore_parallelism_follows_restore_kopia_parallel(harness: Harness, tmp_path: Path,
                                                                  policy: dict[str, Any], workers: int) -> None:
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(random.Random(1).randbytes(700_000))
    job = harness.files_job(agent, src, policy=policy)
    run = harness.run_job(job["id"])
    agent.poll_once()
    snap = harness.finish(agent, run)["snapshot_id"]
    target = harness.tmp / "restores" / "r"
    cmd = harness.command(agent, "restore", job["id"], snapshot_id=snap, target_path=str(target))
    agent.commands.poll_once()
    assert harness.finish(agent, cmd["run_id"])["status"] == "success"
    result = harness.api("GET", f"/api/commands/{cmd['id']}").json()["result"]
    assert result["workers"] == workers
    assert (target / str(src).lstrip("/") / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
