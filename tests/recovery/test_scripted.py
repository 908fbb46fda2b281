"""``e3backup recovery --code C --target DEV --yes``: the whole flow without a browser, through the
real command, against the real server, onto a loop device."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.recovery.conftest import DISK_SIZE, MiB, Site, assert_restored, target_disk


def recovery_cli(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e3backup", "recovery", "--server", site.url, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_scripted_recovery_to_a_larger_disk(site: Site, tmp_path: Path) -> None:
    code = site.issue_code()
    with target_disk(tmp_path, DISK_SIZE + 16 * MiB, fill=b"OLD DATA" * 4096) as dev:
        p = recovery_cli(site, "--code", code, "--target", dev, "--yes")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "Restore complete: remove the rescue media and reboot." in p.stdout
        assert "Restore point: acme-pc" in p.stdout and "partition 2: ext4 root" in p.stdout
        assert "RECOVERY_GPT_MOVED" in p.stderr
        assert_restored(dev, site, grown=True)
    run = site.run(int(re.search(r"recovery run #(\d+)", p.stdout).group(1)))  # type: ignore[union-attr]
    assert (run["status"], run["kind"]) == ("success", "restore")
    codes = [e["code"] for e in site.events(run["id"])]
    for code_ in ("REPOSITORY_OPENED", "RECOVERY_STARTED", "RECOVERY_GPT_MOVED", "RECOVERY_COMPLETED"):
        assert code_ in codes
    again = recovery_cli(site, "--code", code, "--target", "/dev/null", "--yes")
    assert again.returncode == 1 and "already used" in again.stderr
