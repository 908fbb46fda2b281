"""Policy ``verify_boot`` through the agent: every value decides whether a backup is followed by
a proof of restore, and the proof reaches the server (its event, the stored proof)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .conftest import Harness

CASES = [  # (verify_boot, last passed proof days ago, proven)
    ("off", None, False),  # the default: never
    ("daily", None, True),  # never proven: due
    ("daily", 2, True),
    ("weekly", 2, False),  # proven two days ago: not due within the week
    ("weekly", 8, True),
]


def test_verify_boot_decides_when_a_backup_is_proven(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}.bin").write_bytes(random.Random(i).randbytes(20_000))
    ledger = Path(agent.config.state_dir) / "proofs.json"
    for setting, days_ago, proven in CASES:
        job = harness.files_job(agent, src, name=f"{setting} {days_ago}", policy={"verify_boot": setting})
        if days_ago is not None:
            when = datetime.now(UTC) - timedelta(days=days_ago)
            ledger.write_text(json.dumps({str(job["id"]): when.isoformat()}))
        run, proofs, codes = _backup(harness, agent, job)
        case = (setting, days_ago)
        if not proven:
            assert proofs == [] and "PROOF_PASSED" not in codes, case
            continue
        (proof,) = proofs
        assert (proof["kind"], proof["verdict"], proof["run_id"], proof["snapshot_id"]) == (
            "files", "passed", run["id"], run["snapshot_id"]), case
        assert sum(c["name"].startswith("file /") for c in proof["checks"]) == 4, case
        assert "PROOF_PASSED" in codes, case
        assert json.loads(ledger.read_text())[str(job["id"])] == proof["finished_at"].replace("Z", "+00:00")
    # a passed proof is recorded: the next backup of the day is not proven again
    _, proofs, codes = _backup(harness, agent, job)
    assert len(proofs) == 1 and "PROOF_PASSED" not in codes


def _backup(harness: Harness, agent: Any, job: dict[str, Any]) -> tuple[dict[str, Any], list[Any], list[str]]:
    run_id = harness.run_job(job["id"])
    agent.poll_once()
    run = harness.finish(agent, run_id)
    assert run["status"] == "success", run
    return run, harness.api("GET", "/api/proofs", params={"job_id": job["id"]}).json(), harness.codes(run_id)
