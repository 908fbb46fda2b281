"""Defect 1 of issue #28: a lock left by a SIGKILLed run on this host is removed by the next
command that sees it, with a line saying so, and restic's own check (which locks) then passes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e3backup.repo import Repository
from e3backup.repo.lock import list_locks
from e3backup.store import LocalStore

from ..helpers import PASSWORD, e3, restic

pytestmark = pytest.mark.restic

ENV = {"E3BACKUP_PASSWORD": PASSWORD}

_HOLD_A_LOCK = """
import sys
from e3backup.repo import Repository
from e3backup.store import LocalStore
repo = Repository.open(LocalStore(sys.argv[1]), sys.argv[2].encode())
repo.lock(exclusive=sys.argv[3] == "exclusive").acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def _killed_holder(repo: Path, kind: str) -> int:
    """A real process that takes a lock and is then SIGKILLed: its lock file stays behind."""
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_LOCK, str(repo), PASSWORD, kind],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert p.stdout is not None and p.stdout.readline() == "locked\n"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    return p.pid


def _locks(repo: Path) -> list[int]:
    r = Repository.open(LocalStore(repo), PASSWORD.encode())
    return [lk.pid for lk in list_locks(r.store, r.key)]


@pytest.mark.parametrize("kind", ["shared", "exclusive"])
def test_next_backup_removes_the_dead_process_lock(kind: str, tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(os.urandom(1000))
    e3("-r", str(repo), "init", env=ENV)
    pid = _killed_holder(repo, kind)
    assert _locks(repo) == [pid]
    assert restic(repo, "check", check=False).returncode != 0  # restic refuses: locked

    p = e3("-r", str(repo), "backup", str(src), env=ENV)
    lines = [ln for ln in p.stderr.splitlines() if "stale" in ln]
    assert len(lines) == 1 and f"PID {pid}" in lines[0] and "removed" in lines[0], p.stderr
    assert _locks(repo) == []
    restic(repo, "check", "--read-data")  # without --no-lock


def test_a_live_holder_is_left_alone(tmp_path: Path, repo: Repository) -> None:
    """The same-host rule removes only dead holders: our own live lock stays."""
    with repo.lock(), repo.lock():
        assert len(list_locks(repo.store, repo.key)) == 2
