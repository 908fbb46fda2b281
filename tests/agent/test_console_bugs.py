"""Console bugs seen from the agent (#25): retention runs after every backup (1), the disk
report survives the agent's client (2), incremental runs report their speed and upload (7),
missing source paths (9). Each went wrong before its fix."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from e3backup.api.agent import Disk, DiskReport

from .conftest import REPO_PASSWORD, Harness


def _restic_snapshots(repo: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        ["restic", "-r", str(repo), "--no-cache", "snapshots", "--json"],
        env={**os.environ, "RESTIC_PASSWORD": REPO_PASSWORD}, capture_output=True, text=True, check=True,
    )
    return list(json.loads(out.stdout))


def _backup(harness: Harness, agent: object, job_id: int) -> dict[str, object]:
    run = harness.run_job(job_id)
    assert agent.poll_once()  # type: ignore[attr-defined]
    return harness.finish(agent, run)  # type: ignore[arg-type]


def test_retention_forgets_after_every_backup(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    src.mkdir()
    job = harness.files_job(agent, src, retention={"keep_last": 3})
    runs = []
    for i in range(5):
        (src / f"f{i}.txt").write_text(f"version {i}\n")
        runs.append(_backup(harness, agent, job["id"]))
    assert {r["status"] for r in runs} == {"success"}
    snaps = _restic_snapshots(harness.tmp / "repo")
    assert sorted(s["id"] for s in snaps) == sorted(str(r["snapshot_id"]) for r in runs[2:])
    applied = [e for e in harness.events(int(runs[-1]["id"])) if e["code"] == "RETENTION_APPLIED"]
    assert applied and applied[0]["details"]["kept"] == 3 and len(applied[0]["details"]["removed"]) == 1
    shown = [harness.run(int(r["id"])) for r in runs]
    assert [r["snapshot_removed_at"] is not None for r in shown] == [True, True, False, False, False]


def test_periodic_disk_report_is_not_emptied_by_the_client(harness: Harness) -> None:
    agent, _ = harness.make_agent()
    report = DiskReport()
    report.disks.append(Disk(path="/dev/vdb", size_bytes=1 << 30))  # filled like parse_lsblk does
    agent.client.report_disks(report)
    shown = harness.api("GET", f"/api/agents/{agent.config.agent_id}/disks").json()
    assert [d["path"] for d in shown["disks"]] == ["/dev/vdb"]
    agent.report_disks()  # the hourly report from the lsblk recording
    shown = harness.api("GET", f"/api/agents/{agent.config.agent_id}/disks").json()
    assert [d["path"] for d in shown["disks"]] == ["/dev/sda"]


def test_incremental_runs_report_speed_upload_and_counts(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(300_000))
    job = harness.files_job(agent, src)
    first = _backup(harness, agent, job["id"])
    (src / "b.bin").write_bytes(os.urandom(200_000))
    second = _backup(harness, agent, job["id"])
    assert second["backup_type"] == "incremental"
    assert first["bytes_uploaded"] and first["bytes_uploaded"] >= 300_000
    assert second["bytes_uploaded"] and 200_000 <= second["bytes_uploaded"] < first["bytes_uploaded"] + 200_000
    assert second["speed_bytes_per_sec"] and second["speed_bytes_per_sec"] > 0
    assert (second["summary"]["files_new"], second["summary"]["files_unmodified"]) == (1, 1)


def test_a_missing_source_fails_with_an_error_and_creates_no_repository(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    job = harness.files_job(agent, tmp_path / "gone")
    run = _backup(harness, agent, job["id"])
    assert run["status"] == "failed" and "gone" in str(run["error_summary"])
    missing = [e for e in harness.events(int(run["id"])) if e["code"] == "SOURCE_MISSING"]
    assert [(e["level"], e["details"]["path"]) for e in missing] == [("error", str(tmp_path / "gone"))]
    assert not (harness.tmp / "repo").exists()


def test_one_missing_path_among_several_backs_up_the_rest_with_a_warning(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    here = tmp_path / "here"
    here.mkdir()
    (here / "kept.txt").write_text("kept\n")
    job = harness.files_job(agent, here, source_path="", source_paths=[str(here), str(tmp_path / "gone")])
    run = _backup(harness, agent, job["id"])
    assert run["status"] == "warning" and run["snapshot_id"], run
    assert "gone" in str(run["error_summary"])
    levels = [e["level"] for e in harness.events(int(run["id"])) if e["code"] == "SOURCE_MISSING"]
    assert levels == ["warning"]
    (snap,) = _restic_snapshots(harness.tmp / "repo")
    assert snap["paths"] == [str(here)]


def test_usage_per_repository_equals_restic_stats(harness: Harness, tmp_path: Path) -> None:
    """Stored bytes read from the repository's index, as the server reports them for billing,
    equal restic's own count of the blobs' stored size (``stats --mode raw-data``)."""
    from e3backup.server.services import usage

    agent, _ = harness.make_agent()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(400_000))
    (src / "same.bin").write_bytes((src / "a.bin").read_bytes())  # deduplicated
    job = harness.files_job(agent, src)
    _backup(harness, agent, job["id"])
    (src / "b.txt").write_text("more\n" * 10_000)
    last = _backup(harness, agent, job["id"])
    out = subprocess.run(
        ["restic", "-r", str(harness.tmp / "repo"), "--no-cache", "stats", "--mode", "raw-data", "--json"],
        env={**os.environ, "RESTIC_PASSWORD": REPO_PASSWORD}, capture_output=True, text=True, check=True,
    )
    restic = json.loads(out.stdout)
    state = harness.client.app.state.e3  # type: ignore[attr-defined]
    with state.sessions() as session:
        (row,) = usage.report(session, state.box, [harness.tmp], None)
        (unreachable,) = usage.report(session, state.box, [], None)
    assert (row.stored_bytes, row.blobs) == (restic["total_size"], restic["total_blob_count"])
    assert row.protected_bytes == last["bytes_total"] and row.jobs[0][1] == job["name"]
    assert row.where == f"local {harness.tmp / 'repo'}" and row.tenant == "Acme"
    assert "out of the server's reach" in unreachable.error and unreachable.stored_bytes is None
    csv_text = usage.to_csv([row])
    assert csv_text.splitlines()[1].endswith(f",{restic['total_size']},{row.plaintext_bytes},{row.blobs},")
    listed = harness.api("GET", "/api/usage").json()
    assert listed[0]["protected_bytes"] == last["bytes_total"] and "out of the server's reach" in listed[0]["error"]
