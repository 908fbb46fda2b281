"""Policy ``verify_boot`` through the agent: every value decides whether a backup is followed by
a proof of restore, and the proof reaches the server (its event, the stored proof)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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
        # recorded: the next backup within the day (or week) is not proven again ("weekly", 2)
        assert json.loads(ledger.read_text())[str(job["id"])] == proof["finished_at"].replace("Z", "+00:00")


def _backup(harness: Harness, agent: Any, job: dict[str, Any]) -> tuple[dict[str, Any], list[Any], list[str]]:
    run_id = harness.run_job(job["id"])
    agent.poll_once()
    run = harness.finish(agent, run_id)
    assert run["status"] == "success", run
    return run, harness.api("GET", "/api/proofs", params={"job_id": job["id"]}).json(), harness.codes(run_id)


def test_an_image_whose_boot_sector_is_zeroed_fails_its_proof_and_alerts(harness: Harness, tmp_path: Path) -> None:
    """A disk_image job of a disk whose sector 0 was wiped: the backup succeeds, the proof fails
    saying why, and the job's proof_failed incident opens (one incident: the run itself succeeded)."""
    import os
    import shutil

    from tests.sources.diskimages import loop_device

    if os.geteuid() != 0 or shutil.which("losetup") is None:
        pytest.skip("loop devices need root")
    disk = tmp_path / "wiped.img"
    with open(disk, "wb") as f:
        f.write(b"\0" * 512 + random.Random(5).randbytes((2 << 20) - 512))
    agent, _ = harness.make_agent()
    with loop_device(disk, ro=True) as dev:
        job = harness.files_job(agent, Path(dev), engine="disk_image", source_path="", disk_source_volume=dev,
                                disk_image_format="raw", name="wiped", policy={"verify_boot": "weekly"})
        run_id = harness.run_job(job["id"])
        agent.poll_once()
        run = harness.finish(agent, run_id)
    # the run warns for reading a live device (no LVM here), never for its proof
    assert run["status"] == "warning" and run["snapshot_id"] and "PROOF" not in run["error_summary"], run
    (proof,) = harness.api("GET", "/api/proofs", params={"job_id": job["id"]}).json()
    why = ("the disk cannot boot and holds no partition or file system to check: sector 0 is all zeros: no boot "
           "code, no partition table, no 55 AA signature")
    assert (proof["kind"], proof["verdict"], proof["reason"]) == ("boot", "failed", why)
    failed = next(e for e in harness.events(run_id) if e["code"] == "PROOF_FAILED")
    assert failed["message"] == f"proof of restore failed (boot): {why}" and failed["level"] == "error"
    incidents = harness.api("GET", "/api/alerts/incidents").json()
    proof_incidents = [i for i in incidents if i["rule"] == "proof_failed"]
    assert [i["subject"] for i in proof_incidents] == [f"job:{job['id']}"]
    assert proof_incidents[0]["title"] == f"Proof of restore of wiped failed (boot): {why}"
    assert not (Path(agent.config.state_dir) / "proofs.json").exists()  # a failed proof is tried again next time
