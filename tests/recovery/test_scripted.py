"""``e3backup recovery --code C --target DEV --yes``: the whole flow without a browser, through the
real command, against the real server, onto a loop device."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import PASSWORD
from tests.recovery.conftest import DISK_SIZE, MiB, Site, assert_restored, target_disk


def recovery_cli(site: Site, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return recovery_cli_pid(site, *args, env=env)[0]


def recovery_cli_pid(
    site: Site, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], int]:
    """The recovery console run to its end, and its process ID (it names the console's RAM outbox)."""
    argv = [sys.executable, "-m", "e3backup", "recovery", "--server", site.url, *args]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    ) as proc:
        out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), proc.pid


def _files(*roots: Path) -> list[str]:
    return [str(p) for root in roots for p in root.rglob("*") if p.is_file()]


def test_scripted_recovery_to_a_larger_disk(site: Site, tmp_path: Path) -> None:
    code = site.issue_code()
    # where a program could keep something: all empty after the run (the outbox lives in RAM)
    home, tmp, cache = (tmp_path / d for d in ("home", "tmp", "cache"))
    for d in (home, tmp, cache):
        d.mkdir()
    places = {"HOME": str(home), "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache), "E3BACKUP_CACHE_DIR": str(cache)}
    with target_disk(tmp_path, DISK_SIZE + 16 * MiB, fill=b"OLD DATA" * 4096) as dev:
        p, pid = recovery_cli_pid(site, "--code", code, "--target", dev, "--yes", env=places)
        assert p.returncode == 0, p.stdout + p.stderr
        assert _files(home, tmp, cache) == []
        # the RAM outbox is named after the console's process (other tests' consoles run alongside)
        assert list(Path("/dev/shm").glob(f"e3backup-recovery-{pid}-*")) == []
        assert PASSWORD not in p.stdout + p.stderr  # the repository password: handed over, never shown
        assert "Restore complete: remove the rescue media and reboot." in p.stdout
        assert "Restore point: acme-pc" in p.stdout and "partition 2: ext4 root" in p.stdout
        assert "RECOVERY_GPT_MOVED" in p.stderr
        assert_restored(dev, site, grown=True)
    run = site.run(int(re.search(r"recovery run #(\d+)", p.stdout).group(1)))  # type: ignore[union-attr]
    assert (run["status"], run["kind"]) == ("success", "restore")
    events = site.events(run["id"])
    codes = [e["code"] for e in events]
    started = next(e for e in events if e["code"] == "RECOVERY_STARTED")
    # the job's policy: restore_parallel_workers 2, restore_segment_size_mb 4
    assert (started["details"]["workers"], started["details"]["segment_size"]) == (2, 4 * MiB)
    for code_ in ("REPOSITORY_OPENED", "RECOVERY_STARTED", "RECOVERY_GPT_MOVED", "RECOVERY_COMPLETED"):
        assert code_ in codes
    again = recovery_cli(site, "--code", code, "--target", "/dev/null", "--yes")
    assert again.returncode == 1 and "already used" in again.stderr
