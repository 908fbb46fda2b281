"""Fixtures of the instant restore tests: image snapshots in a repository, made once per module."""

from __future__ import annotations

import hashlib
from pathlib import Path

from e3backup.repo import Repository
from e3backup.store import LocalStore
from tests.helpers import PASSWORD


def open_repo(path: Path) -> Repository:
    return Repository.open(LocalStore(path), PASSWORD.encode())


def pack_hashes(repo_path: Path) -> dict[str, str]:
    """SHA-256 of every file under data/ (the packs): they must never change while serving."""
    return {
        str(p.relative_to(repo_path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((repo_path / "data").rglob("*"))
        if p.is_file()
    }
