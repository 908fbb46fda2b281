"""Maintenance for the agent (quick/full) and the forget/prune commands' output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e3backup.maintenance import MaintenanceOptions, run_maintenance
from e3backup.progress import Progress
from e3backup.repo import Repository
from e3backup.repo.forget import ForgetPolicy
from e3backup.store import LocalStore

from ..helpers import PASSWORD, run_cli
from .test_prune import chunks, contents, snapshot


def _history(repo: Repository) -> None:
    shared = chunks(2)
    for i in range(4):
        snapshot(repo, {b"shared": shared, b"own": chunks(2)}, t=10**18 + i * 86400 * 10**9)


@pytest.mark.parametrize("mode", ["quick", "full"])
def test_maintenance_modes(mode: str, repo: Repository, repo_path: Path) -> None:
    _history(repo)
    seen: list[dict[str, Any]] = []
    with Progress(mode="quiet", interval=0.01, callback=seen.append) as progress:
        r = Repository.open(LocalStore(repo_path), PASSWORD.encode())
        summary = run_maintenance(r, MaintenanceOptions(mode, ForgetPolicy(keep_last=2)), progress)
    assert summary["ok"] and len(summary["snapshots_removed"]) == 2 and summary["snapshots_kept"] == 2
    assert summary["prune"]["packs_deleted"] >= 2
    if mode == "quick":
        assert summary["check"] is None and summary["prune"]["packs_repacked"] == 0
    else:
        assert summary["check"]["ok"] and summary["check"]["packs_read"] >= 1
    assert seen and seen[-1]["stage"] == "done"
    assert len(contents(repo_path)) == 2


def test_forget_and_prune_commands(
    repo: Repository, repo_path: Path, password_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _history(repo)
    before = contents(repo_path)
    r = run_cli(capsys, "-r", str(repo_path), "forget", "--keep-daily", "3", "--dry-run")
    assert r.code == 0 and "would remove 1 snapshots" in r.out and "[daily snapshot]" in r.out, r.out
    r = run_cli(capsys, "-r", str(repo_path), "forget", "--keep-last", "3", "--json")
    groups = json.loads(r.out)
    assert len(groups) == 1 and len(groups[0]["keep"]) == 3 and len(groups[0]["remove"]) == 1
    assert groups[0]["reasons"][0]["matches"] == ["last snapshot"]
    r = run_cli(capsys, "-r", str(repo_path), "prune", "--dry-run", "--max-unused", "0%")
    assert r.code == 0 and "to delete:" in r.out and "dry run" in r.out, r.out
    r = run_cli(capsys, "-r", str(repo_path), "prune", "--max-unused", "0%", "--max-repack-size", "1G")
    assert r.code == 0 and "freed" in r.out, r.out + r.err
    after = contents(repo_path)
    assert after == {k: v for k, v in before.items() if k in after} and len(after) == 3
    assert run_cli(capsys, "-r", str(repo_path), "check", "--read-data").code == 0
    r = run_cli(capsys, "-r", str(repo_path), "forget")
    assert "no policy was specified" in r.out
    r = run_cli(capsys, "-r", str(repo_path), "prune", "--max-unused", "lots")
    assert r.code == 2
    r = run_cli(capsys, "-r", str(repo_path), "maintenance", "full", "--keep-last", "1", "--json")
    assert r.code == 0, r.err
    summary = json.loads(r.out.splitlines()[-1])
    assert summary["message_type"] == "summary" and summary["check"]["ok"]
