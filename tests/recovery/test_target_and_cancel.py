"""Choosing the target (a disk too small for a partition is refused with the reason) and a cancel
from the dashboard reaching the console through the session (it polls for cancel)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

from e3backup.agent.transport import HttpxTransport
from e3backup.recovery.client import RecoveryClient
from e3backup.recovery.console import ConsoleSettings, Hooks, Phase, RecoveryConsole
from tests.recovery.conftest import DISK_SIZE, MiB, Site, assert_restored, target_disk


def test_a_disk_too_small_for_a_partition_is_refused_with_the_reason(site: Site, tmp_path: Path) -> None:
    code = site.issue_code()
    with target_disk(tmp_path, 24 * MiB) as dev:  # partition 2 ends at 33 MiB
        p = subprocess.run(
            [sys.executable, "-m", "e3backup", "recovery", "--server", site.url, "--code", code, "--target", dev,
             "--yes"],
            capture_output=True, text=True, timeout=120,
        )
        assert p.returncode == 2, p.stdout + p.stderr
        assert "too small for the image's used extent: partition 2 ends at 33.0 MiB" in p.stderr
        with open(dev, "rb") as f:
            assert f.read(1 << 20) == bytes(1 << 20)  # nothing written
    run = site.run(int(re.search(r"recovery run #(\d+)", p.stdout).group(1)))  # type: ignore[union-attr]
    assert run["status"] == "cancelled" and "partition 2 ends at 33.0 MiB" in run["error_summary"]


def test_cancel_from_the_dashboard_stops_the_console(site: Site, tmp_path: Path) -> None:
    code = site.issue_code()
    console: RecoveryConsole | None = None
    asked = threading.Event()

    def on_segment(_first: int) -> None:
        if asked.is_set():
            return
        asked.set()
        run_id = console.image.point.run_id  # type: ignore[union-attr]
        page = site.user.get(f"/runs/{run_id}", headers={"Accept": "text/html"}).text
        assert "Cancel the recovery" in page
        r = site.user.post(f"/runs/{run_id}/recovery/cancel", headers={"Accept": "text/html"},
                           data={"csrf_token": site.user.headers["X-CSRF-Token"]}, follow_redirects=False)
        assert r.status_code == 303, r.text
        assert console.reporter is not None and console.reporter.cancel.wait(30)  # seen by the poll

    console = RecoveryConsole(
        RecoveryClient(HttpxTransport.network(site.url)),
        ConsoleSettings(workers=1, segment_size_mb=4, poll_interval=0.1),
        hooks=Hooks(on_segment=on_segment),
    )
    try:
        run_id = console.sign_in(code).point.run_id
        with target_disk(tmp_path, DISK_SIZE) as dev:
            console.start(dev, Path(dev).name)
            assert console.wait(60) is Phase.CANCELLED
            assert console.wait_delivered(30)
        assert "cancelled from the dashboard" in console.status().message
    finally:
        console.close()
    run = site.run(run_id)
    assert run["status"] == "cancelled"
    assert "RUN_CANCELLED" in [e["code"] for e in site.events(run_id)]


def test_a_smaller_disk_that_holds_every_partition_takes_the_image(site: Site, tmp_path: Path) -> None:
    """35 MiB for a 40 MiB source whose partitions end at 33 MiB: restored, the rest of the disk
    zeroed (it held old data), the backup GPT written at the smaller disk's end."""
    code = site.issue_code()
    size = 35 * MiB
    with target_disk(tmp_path, size, fill=b"\xaa" * size) as dev:
        p = subprocess.run(
            [sys.executable, "-m", "e3backup", "recovery", "--server", site.url, "--code", code, "--target", dev,
             "--yes", "--workers", "3", "--segment-size-mb", "8"],
            capture_output=True, text=True, timeout=120,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert "smaller than the source disk" in p.stderr  # RECOVERY_GPT_MOVED says so
        run_id = int(re.search(r"recovery run #(\d+)", p.stdout).group(1))  # type: ignore[union-attr]
        started = next(e for e in site.events(run_id) if e["code"] == "RECOVERY_STARTED")
        assert (started["details"]["workers"], started["details"]["segment_size"]) == (3, 8 * MiB)  # the flags
        assert_restored(dev, site, grown=True)
        end_of_partitions = max(start + n for start, n in site.disk.parts.values())
        with open(dev, "rb") as f:
            f.seek(end_of_partitions)
            assert f.read(size - 33 * 512 - end_of_partitions).strip(b"\0") == b""  # no old data left


def test_the_console_restores_only_the_sessions_host(site: Site) -> None:
    """An agent run that reported another host's snapshot (a shared repository): the server takes
    it as the agent's, but the console checks the snapshot's host and restores nothing."""
    from e3backup.engines.disk_image import ImageBackupOptions, run_image_backup
    from tests.recovery.conftest import open_repo

    assert site.user.post(f"/api/jobs/{site.job_id}/run").status_code == 201
    run = site.agent.post("/api/agent/next_run", json={}).json()["run"]
    repo = open_repo(site.repo_location)
    try:
        foreign = run_image_backup(
            repo, ImageBackupOptions(source=str(site.disk.path), snapshot="none", host="gx-srv")
        ).snapshot_id
    finally:
        repo.close()
    done = {"run_id": run["run_id"], "status": "success", "snapshot_id": foreign}
    assert site.agent.post("/api/agent/update_run", json=done).status_code == 200
    console = RecoveryConsole(RecoveryClient(HttpxTransport.network(site.url)))
    reason = ""
    try:
        console.sign_in(site.issue_code(foreign))
    except Exception as e:
        reason = str(e)
    finally:
        console.close(reason)
    assert "belongs to host 'gx-srv'; this recovery session is for 'acme-pc': nothing restored" in reason
    recovery = max(site.recovery_runs(), key=lambda r: r["id"])
    assert recovery["status"] == "failed" and "gx-srv" in recovery["error_summary"]
    assert "RECOVERY_FAILED" in [e["code"] for e in site.events(recovery["id"])]
