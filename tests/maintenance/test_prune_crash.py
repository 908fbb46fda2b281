"""SIGKILL the real CLI at every step of forget --prune: the repository stays correct.

After each crash: our ``check --read-data`` and restic's pass, every snapshot left restores
byte for byte (and with its metadata) to what was backed up, and a second prune completes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from e3backup.engines.files import BackupOptions, run_backup
from e3backup.repo import Repository
from e3backup.repo.check import Checker
from e3backup.repo.prune import CRASH_ENV, STEPS, execute, plan_prune
from e3backup.restore.files import RestoreOptions, run_restore
from e3backup.store import LocalStore

from ..conftest import FAST_KDF
from ..engines.trees import describe
from ..helpers import PASSWORD, e3, restic

pytestmark = pytest.mark.restic

ENV = {"E3BACKUP_PASSWORD": PASSWORD, "E3BACKUP_PACK_SIZE": "1"}
FILES = 12
FILE_SIZE = 150_000


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Path]]:
    """Six backups of twelve files; three of the first nine change each time, the last three never.

    So after keeping the last two snapshots, the first backup's packs are partly used (repacked),
    the second's are unused (deleted). The states are kept per snapshot for restore comparisons.
    """
    base = tmp_path_factory.mktemp("prune-crash")
    repo, src, states = base / "repo", base / "src", base / "states"
    src.mkdir()
    Repository.init(LocalStore(repo), PASSWORD.encode(), FAST_KDF).close()
    by_snap: dict[str, Path] = {}
    for i in range(6):
        changed = range(FILES) if i == 0 else [(i * 3 + k) % 9 for k in range(3)]
        for f in changed:
            (src / f"f{f:02d}").write_bytes(os.urandom(FILE_SIZE))
        r = _open(repo)
        r.pack_size = 1 << 20
        result = run_backup(r, BackupOptions(paths=[str(src)]))
        by_snap[result.snapshot_id] = shutil.copytree(src, states / str(i))
    return repo, src, by_snap


def _open(repo: Path) -> Repository:
    return Repository.open(LocalStore(repo), PASSWORD.encode())


def _verify(repo: Path, src: Path, by_snap: dict[str, Path], work: Path, kept: set[str], n: int) -> None:
    restic(repo, "unlock")  # the killed process's lock is stale (same host, dead PID)
    restic(repo, "check", "--read-data")
    res = Checker(_open(repo)).run("100%")
    assert res.ok, res.errors
    left = {s.id for s in _open(repo).snapshots()}
    assert kept <= left and len(left) == n
    for snap_id in left:
        target = work / f"restore-{snap_id[:8]}"
        run_restore(_open(repo), RestoreOptions(str(target), snapshot=snap_id))
        restored = target / str(src).lstrip("/")
        assert describe(restored) == describe(by_snap[snap_id]), snap_id


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_every_step(step: str, template: tuple[Path, Path, dict[str, Path]], tmp_path: Path) -> None:
    tpl, src, by_snap = template
    repo = tmp_path / "repo"
    shutil.copytree(tpl, repo)
    kept = set(list(by_snap)[-2:])
    args = ["-r", str(repo), "forget", "--keep-last", "2", "--prune", "--max-unused", "0%"]
    p = e3(*args, env={**ENV, CRASH_ENV: step}, check=False)
    assert p.returncode == -signal.SIGKILL, p.stdout + p.stderr
    n = len(by_snap) - 1 if step == "forget" else len(kept)  # forget dies after removing one
    _verify(repo, src, by_snap, tmp_path, kept, n)
    # the next prune finishes the job and leaves nothing unused
    r = _open(repo)
    with r.lock(exclusive=True):
        execute(r, plan_prune(r, "0%"))
    r = _open(repo)
    again = plan_prune(r, "0%")
    assert again.nothing_to_do and again.stats.unused_bytes == 0
    res = Checker(_open(repo)).run("100%")
    assert res.ok and not res.problems, res.problems


def test_uninterrupted_prune_frees_space_and_restic_agrees(
    template: tuple[Path, Path, dict[str, Path]], tmp_path: Path
) -> None:
    tpl, src, by_snap = template
    repo = tmp_path / "repo"
    shutil.copytree(tpl, repo)
    size = sum(f.stat().st_size for f in (repo / "data").rglob("*") if f.is_file())
    out = e3("-r", str(repo), "forget", "--keep-last", "2", "--prune", "--max-unused", "0%", "--json", env=ENV)
    doc = json.loads(out.stdout)
    assert doc["prune"]["plan"]["delete_packs"] >= 1
    assert doc["prune"]["result"]["packs_repacked"] >= 1 and doc["prune"]["result"]["bytes_freed"] > 0
    after = sum(f.stat().st_size for f in (repo / "data").rglob("*") if f.is_file())
    assert after < size - 10 * FILE_SIZE
    _verify(repo, src, by_snap, tmp_path, set(list(by_snap)[-2:]), 2)
